"""Multi-index hashing: exact Hamming range search over 256-bit codes without reading them all.

Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index Hashing" (CVPR 2012).
Each code is cut into m substrings and each substring has a table from its value to the codes that
hold it. Search substring j within t_j bits, with sum(t_j + 1) >= r + 1: if two codes are at most r
bits apart, some substring j differs by at most t_j bits (were every one at least t_j + 1 apart,
the whole codes would be at least r + 1 apart). So probing, in every table, each value within t_j
bits of the query's substring, then keeping the candidates whose full distance is <= r, returns
exactly the codes a linear scan returns. Substrings of about log2(N) bits (the paper's choice)
keep both the probes and the codes per probed bucket few.

Each table is a CSR: `offsets` (2**w + 1 bucket starts) into `positions` (the N code positions
sorted by the substring's value), so a probe is two array reads and nothing is rebuilt on load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import combinations

import numpy as np

CODE_BITS = 256
MIN_WIDTH, MAX_WIDTH = 16, 22  # 2**22 buckets a table (16 MB of offsets) at most
MAX_PROBES = 1 << 20  # more probes than this never beat a scan of the largest banks


@dataclass(frozen=True, eq=False)
class MultiIndex:
    """Substring tables over codes 0..N-1 of a (N, 32) uint8 array kept by the caller."""

    widths: np.ndarray = field(repr=False)  # (m,) bits per substring, widest first, summing to 256
    offsets: np.ndarray = field(repr=False)  # (sum of 2**w + 1,) uint32 bucket starts of every table, concatenated
    positions: np.ndarray = field(repr=False)  # (m, N) int32: table j's code positions by substring value

    @classmethod
    def build(cls, codes: np.ndarray, width: int | None = None) -> "MultiIndex":
        """Tables for `codes` ((N, 32) uint8), substrings of about `width` bits (16 to 22;
        default log2(N))."""
        widths = substring_widths(len(codes), width)
        parts = [_table(codes, start, int(width)) for start, width in zip(_starts(widths), widths)]
        return cls(widths, _concat([o for o, _ in parts]),
                   np.stack([p for _, p in parts]) if parts else np.zeros((len(widths), 0), np.int32))

    def __len__(self) -> int:
        return self.positions.shape[1]

    def check(self, n: int) -> None:
        """ValueError unless the tables are shaped for `n` codes (a half-written or mixed save)."""
        widths = [int(w) for w in self.widths]
        if (sum(widths) != CODE_BITS or self.positions.shape != (len(widths), n)
                or len(self.offsets) != sum((1 << w) + 1 for w in widths)
                or any(int(self.offsets[base + (1 << w)]) != n for base, w in zip(_bases(widths), widths))):
            raise ValueError("pdq multi-index files do not agree")

    def appended(self, codes: np.ndarray, new: np.ndarray) -> "MultiIndex":
        """The tables for `codes` (all N + k of them) when `new` ((k, 32)) are its last k rows.

        Merged bucket by bucket (old positions first, then the new ones), which moves O(N) memory
        but sorts only the k new keys; the substrings keep their widths (see `outgrown`).
        """
        old = len(self)
        offsets, positions = [], np.empty((len(self.widths), old + len(new)), np.int32)
        for j, start, width, base in self._layout:
            before = self.offsets[base : base + (1 << width) + 1].astype(np.int64)
            added, order = _table(new, start, width)
            # Old entry i of bucket b moves up by the new entries of buckets < b; new entry i of
            # bucket b lands after all old entries of buckets <= b.
            moved = np.arange(old) + np.repeat(added[:-1], np.diff(before))
            positions[j, moved] = self.positions[j]
            keys = np.repeat(np.arange(1 << width), np.diff(added))
            positions[j, before[keys + 1] + np.arange(len(new))] = order + old
            offsets.append(before + added)
        return MultiIndex(self.widths, _concat(offsets), positions)

    def outgrown(self, n: int) -> bool:
        """Whether `n` codes want substrings two or more bits wider or narrower (4x more or fewer
        codes than these tables were built for): then rebuilding beats keeping them."""
        return abs(int(substring_widths(n)[0]) - int(self.widths[0])) >= 2

    def without(self, keep: np.ndarray) -> "MultiIndex":
        """The tables without the positions where `keep` ((N,) bool) is false, renumbered."""
        renumbered = (np.cumsum(keep) - 1).astype(np.int32)
        offsets, positions = [], np.empty((len(self.widths), int(keep.sum())), np.int32)
        for j, _, width, base in self._layout:
            row = self.positions[j]
            kept = keep[row]
            positions[j] = renumbered[row[kept]]
            kept_before = np.concatenate([[0], np.cumsum(kept)])
            offsets.append(kept_before[self.offsets[base : base + (1 << width) + 1]])
        return MultiIndex(self.widths, _concat(offsets), positions)

    @cached_property
    def _layout(self) -> list[tuple[int, int, int, int]]:
        """(table, first bit, width, where its offsets begin) per table."""
        widths = [int(w) for w in self.widths]
        return list(zip(range(len(widths)), _starts(widths), widths, _bases(widths)))

    def _probes(self, max_distance: int) -> tuple[int, list[tuple[int, int, int, np.ndarray]], np.ndarray]:
        """(probe count, per probed table (shift, mask of its substring, where its offsets begin, XOR
        masks of its probes), where each probe's table begins in the flattened positions); cached
        per radius, tables left empty when there are more than MAX_PROBES probes."""
        plans = self.__dict__.setdefault("_plans", {})
        if max_distance not in plans:
            shells = plan(self.widths, max_distance)
            count = sum(_ball(int(w), s - 1) for w, s in zip(self.widths, shells))
            tables, rows = [], [np.zeros(0, np.int64)]
            for (j, start, width, base), shell in zip(self._layout, shells if count <= MAX_PROBES else []):
                if shell:
                    xor = _masks(width, shell - 1)
                    tables.append((CODE_BITS - start - width, (1 << width) - 1, base, xor))
                    rows.append(np.full(len(xor), j * len(self), np.int64))
            plans[max_distance] = (count, tables, np.concatenate(rows))
        return plans[max_distance]

    def search(self, words: np.ndarray, query: np.ndarray, max_distance: int,
               budget: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(positions, distances) of the codes within `max_distance` bits of `query` ((32,) uint8),
        ascending by position; `words` is the (N, 4) uint64 view of the codes. None when the probes
        plus candidates would exceed `budget` (then a linear scan is cheaper)."""
        count, tables, rows = self._probes(max_distance)
        if count > min(budget, MAX_PROBES):
            return None
        value = int.from_bytes(query.tobytes(), "big")
        probes = np.concatenate([base + (((value >> shift) & mask) ^ xor) for shift, mask, base, xor in tables])
        first = self.offsets[probes].astype(np.int64)
        starts, lengths = first + rows, self.offsets[probes + 1] - first
        total = int(lengths.sum())
        if total + len(lengths) > budget:
            return None
        # One gather of every probed bucket: entry k of bucket i is flat index starts[i] + k.
        flat = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        candidates = self.positions.reshape(-1)[flat]
        distances = np.bitwise_count(words[candidates] ^ query.view(np.uint64)).sum(axis=1)
        near = distances <= max_distance
        found, first_seen = np.unique(candidates[near], return_index=True)  # one code can be found via several tables
        return found.astype(np.int64), distances[near][first_seen].astype(np.int64)


def substring_widths(n: int, width: int | None = None) -> np.ndarray:
    """Bits per substring for `n` codes: about `width` (default log2(n)) each, within 16 to 22,
    widest first, summing to 256."""
    width = min(MAX_WIDTH, max(MIN_WIDTH, width or round(math.log2(max(n, 2)))))
    count = -(-CODE_BITS // width)
    narrow, wider = divmod(CODE_BITS, count)
    return np.array([narrow + 1] * wider + [narrow] * (count - wider), np.int16)


def plan(widths, max_distance: int) -> list[int]:
    """Shells (t_j + 1, 0 for a table not probed) per table summing to max_distance + 1, the
    pigeonhole bound; the extra shells go to the widest tables, whose buckets are smallest."""
    each, extra = divmod(max_distance + 1, len(widths))
    return [min(each + (j < extra), int(w) + 1) for j, w in enumerate(widths)]


def _starts(widths) -> list[int]:
    return [0] + np.cumsum([int(w) for w in widths])[:-1].tolist()


def _bases(widths) -> list[int]:
    """Where each table's offsets begin in the concatenated `offsets`."""
    return [0] + np.cumsum([(1 << int(w)) + 1 for w in widths])[:-1].tolist()


def _concat(offsets: list[np.ndarray]) -> np.ndarray:
    """Tables' offsets as one uint32 array (half of int64's size, and 4 billion codes is plenty)."""
    return np.concatenate(offsets).astype(np.uint32) if offsets else np.zeros(0, np.uint32)


def _substring(codes: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits start..start+width-1 of each code (bit 0: the first byte's most significant) as (N,) int64."""
    first, last = start // 8, (start + width - 1) // 8
    value = np.zeros(len(codes), np.uint64)
    for byte in range(first, last + 1):
        value = (value << np.uint64(8)) | codes[:, byte]
    value >>= np.uint64((last + 1) * 8 - start - width)
    return (value & np.uint64((1 << width) - 1)).astype(np.int64)


def _table(codes: np.ndarray, start: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (2**width + 1,), positions by substring value (N,) int32) of one substring."""
    keys = _substring(codes, start, width)
    offsets = np.zeros((1 << width) + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << width), out=offsets[1:])
    return offsets, np.argsort(keys.astype(np.uint32), kind="stable").astype(np.int32)


def _ball(width: int, radius: int) -> int:
    """How many values are within `radius` bits of a `width`-bit value."""
    return sum(math.comb(width, k) for k in range(min(radius, width) + 1))


@lru_cache(maxsize=64)
def _masks(width: int, radius: int) -> np.ndarray:
    """Every `width`-bit value with at most `radius` bits set, as int64 (what a probe XORs in)."""
    out = [0]
    for k in range(1, min(radius, width) + 1):
        out += [sum(1 << b for b in bits) for bits in combinations(range(width), k)]
    return np.array(out, np.int64)
