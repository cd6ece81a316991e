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
Beside each position, `following` keeps the code's next substring (cyclically), which prunes
candidates before their codes are read, by the pigeonring argument (Qin et al., "Pigeonring: A
Principle for Faster Thresholded Similarity Search", VLDB 2018): the slacks s_j = t_j + 1 - d_j sum
to at least 1, so some j starts a cycle whose every prefix sum of slacks is positive (the cycle
lemma). That j has d_j <= t_j, so its table finds the code, and d_j + d_j+1 <= t_j + t_j+1 + 1.

What it costs grows with r / m: at 10M random codes (12 substrings of 21-22 bits), radius 31 probes
~2k buckets and reads ~7k entries, but radius 52 spreads 53 shells over 12 substrings, so each is
searched within 3-4 bits: ~55k probes and ~175k entries (the pigeonring keeps ~2k of them), 25x the
work (`bench/hashlists.py`). Every pigeonhole split of 256 bits meets this at r = 52. The loop is
memory latency (a random read per probe and per bucket) plus, in numpy, index arithmetic over every
entry; compiled (`_mih.c`, built where pip finds a C compiler) it issues the reads ahead of use and
skips the arithmetic: radius 52 at 10M codes p50 2.2 ms against 5.6 ms in numpy, on one core.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import combinations

import numpy as np

try:  # the inner loop in C (_mih.c), built where pip found a compiler; numpy does the same otherwise
    from ._mih import search as NATIVE
except ImportError:
    NATIVE = None

CODE_BITS = 256
MIN_WIDTH, MAX_WIDTH = 16, 22  # 2**22 buckets a table (16 MB of offsets) at most
MAX_PROBES = 1 << 20  # more probes than this never beat a scan of the largest banks
# Without the compiled loop, searches probing this many buckets (radius 52 at 10M codes: ~55k, ~175k
# entries) are split in two halves searched by two threads when the machine has two cores (measured:
# p50 6.3 -> 5.1 ms, p99 8.5 -> 6.3 ms with both cores already busy); radius 31 (~2k probes) is not.
PARALLEL_FROM = 16_384 if (os.cpu_count() or 1) > 1 else MAX_PROBES + 1


def compiled() -> bool:
    """Whether searches run the compiled inner loop (`_mih.c` was built, and is not switched off)."""
    return NATIVE is not None


@dataclass(frozen=True, eq=False)
class MultiIndex:
    """Substring tables over codes 0..N-1 of a (N, 32) uint8 array kept by the caller."""

    widths: np.ndarray = field(repr=False)  # (m,) bits per substring, widest first, summing to 256
    offsets: np.ndarray = field(repr=False)  # (sum of 2**w + 1,) uint32 bucket starts of every table, concatenated
    positions: np.ndarray = field(repr=False)  # (m, N) int32: table j's code positions by substring value
    following: np.ndarray = field(repr=False)  # (m, N) uint32: substring j+1 (mod m) of the code at positions[j]

    @classmethod
    def build(cls, codes: np.ndarray, width: int | None = None) -> "MultiIndex":
        """Tables for `codes` ((N, 32) uint8), substrings of about `width` bits (16 to 22;
        default log2(N))."""
        widths = substring_widths(len(codes), width)
        spans = list(zip(_starts(widths), [int(w) for w in widths]))
        parts = [_table(codes, span, spans[(j + 1) % len(spans)]) for j, span in enumerate(spans)]
        return cls(widths, _concat([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                   np.stack([p[2] for p in parts]))

    def __len__(self) -> int:
        return self.positions.shape[1]

    def check(self, n: int) -> None:
        """ValueError unless the tables are shaped for `n` codes (a half-written or mixed save)."""
        widths = [int(w) for w in self.widths]
        if (sum(widths) != CODE_BITS or self.positions.shape != (len(widths), n)
                or self.following.shape != self.positions.shape
                or len(self.offsets) != sum((1 << w) + 1 for w in widths)
                or any(int(self.offsets[base + (1 << w)]) != n for base, w in zip(_bases(widths), widths))):
            raise ValueError("pdq multi-index files do not agree")

    def appended(self, codes: np.ndarray, new: np.ndarray) -> "MultiIndex":
        """The tables for `codes` (all N + k of them) when `new` ((k, 32)) are its last k rows.

        Merged bucket by bucket (old positions first, then the new ones), which moves O(N) memory
        but sorts only the k new keys; the substrings keep their widths (see `outgrown`).
        """
        old, m = len(self), len(self.widths)
        offsets, positions = [], np.empty((m, old + len(new)), np.int32)
        following = np.empty((m, old + len(new)), np.uint32)
        for j, start, width, base in self._layout:
            before = self.offsets[base : base + (1 << width) + 1].astype(np.int64)
            added, order, after = _table(new, (start, width), self._layout[(j + 1) % m][1:3])
            # Old entry i of bucket b moves up by the new entries of buckets < b; new entry i of
            # bucket b lands after all old entries of buckets <= b.
            moved = np.arange(old) + np.repeat(added[:-1], np.diff(before))
            positions[j, moved], following[j, moved] = self.positions[j], self.following[j]
            keys = np.repeat(np.arange(1 << width), np.diff(added))
            landed = before[keys + 1] + np.arange(len(new))
            positions[j, landed], following[j, landed] = order + old, after
            offsets.append(before + added)
        return MultiIndex(self.widths, _concat(offsets), positions, following)

    def outgrown(self, n: int) -> bool:
        """Whether `n` codes want substrings two or more bits wider or narrower (4x more or fewer
        codes than these tables were built for): then rebuilding beats keeping them."""
        return abs(int(substring_widths(n)[0]) - int(self.widths[0])) >= 2

    def without(self, keep: np.ndarray) -> "MultiIndex":
        """The tables without the positions where `keep` ((N,) bool) is false, renumbered."""
        renumbered = (np.cumsum(keep) - 1).astype(np.int32)
        offsets, positions = [], np.empty((len(self.widths), int(keep.sum())), np.int32)
        following = np.empty(positions.shape, np.uint32)
        for j, _, width, base in self._layout:
            row = self.positions[j]
            kept = keep[row]
            positions[j], following[j] = renumbered[row[kept]], self.following[j][kept]
            kept_before = np.concatenate([[0], np.cumsum(kept)])
            offsets.append(kept_before[self.offsets[base : base + (1 << width) + 1]])
        return MultiIndex(self.widths, _concat(offsets), positions, following)

    @cached_property
    def _layout(self) -> list[tuple[int, int, int, int]]:
        """(table, first bit, width, where its offsets begin) per table."""
        widths = [int(w) for w in self.widths]
        return list(zip(range(len(widths)), _starts(widths), widths, _bases(widths)))

    def _probes(self, max_distance: int) -> tuple:
        """The search plan of a radius, cached: (probe count; per probed table: shift and mask of its
        substring in the code, where its offsets begin, XOR masks of its probes; per probe: its
        table, where that table begins in the flattened positions, and how far the next substring
        may be, d_j+1 <= t_j + t_j+1 + 1 - d_j). Tables are left out past MAX_PROBES probes."""
        plans = self.__dict__.setdefault("_plans", {})
        if max_distance not in plans:
            shells = plan(self.widths, max_distance)
            count = sum(_ball(int(w), s - 1) for w, s in zip(self.widths, shells))
            tables, table_of, rows, allowed = [], [], [], []
            for (j, start, width, base), shell in zip(self._layout, shells if count <= MAX_PROBES else []):
                if shell:
                    xor = _masks(width, shell - 1)
                    tables.append((CODE_BITS - start - width, (1 << width) - 1, base, xor))
                    table_of.append(np.full(len(xor), j))
                    rows.append(np.full(len(xor), j * len(self), np.int64))
                    allowed.append(shell + shells[(j + 1) % len(shells)] - 1 - np.bitwise_count(xor).astype(np.int64))
            arrays = [np.concatenate(a) if a else np.zeros(0, np.int64) for a in (table_of, rows, allowed)]
            plans[max_distance] = (count, tables, *arrays)
        return plans[max_distance]

    def search(self, words: np.ndarray, query: np.ndarray, max_distance: int,
               budget: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(positions, distances) of the codes within `max_distance` bits of `query` ((32,) uint8),
        ascending by position; `words` is the (N, 4) uint64 view of the codes. None when the probes
        plus bucket entries would exceed `budget` (then a linear scan is cheaper)."""
        if max_distance < 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        count, tables, table_of, rows, allowed = self._probes(max_distance)
        if count > min(budget, MAX_PROBES):
            return None
        value = int.from_bytes(query.tobytes(), "big")
        probes = np.concatenate([base + (((value >> shift) & mask) ^ xor) for shift, mask, base, xor in tables])
        nexts = np.array([(value >> shift) & mask for shift, mask, _, _ in self._next_substrings],
                         np.uint32)[table_of]
        search = self._compiled if compiled() else self._numpy
        found = search(words, query, max_distance, budget, probes, rows, nexts, allowed)
        if found is None:
            return None
        candidates, distances = found
        positions, first_seen = np.unique(candidates, return_index=True)  # one code can be found via several tables
        return positions.astype(np.int64), distances[first_seen].astype(np.int64)

    def _compiled(self, words: np.ndarray, query: np.ndarray, max_distance: int, budget: int, probes: np.ndarray,
                  rows: np.ndarray, nexts: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(candidates, distances) in _mih.c, one thread: its time is memory latency, which a second
        thread did not hide (measured 2.2 ms either way at radius 52, 10M codes)."""
        found = NATIVE(self.offsets, self.positions, self.following, words, query.view(np.uint64), probes, rows,
                       nexts, allowed, max_distance, budget)
        return None if found is None else tuple(np.frombuffer(column, np.int64) for column in found)

    def _numpy(self, words: np.ndarray, query: np.ndarray, max_distance: int, budget: int, probes: np.ndarray,
               rows: np.ndarray, nexts: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(candidates, distances) in numpy, wide searches split between two threads."""
        first = self.offsets[probes].astype(np.int64)
        starts, lengths = first + rows, self.offsets[probes + 1] - first
        if int(lengths.sum()) + len(lengths) > budget:
            return None
        parts = [(starts[a:b], lengths[a:b], nexts[a:b], allowed[a:b])
                 for a, b in _halves(len(probes), len(probes) >= PARALLEL_FROM)]
        work = lambda part: self._verified(words, query, max_distance, *part)  # noqa: E731
        found = list(_pool().map(work, parts)) if len(parts) > 1 else [work(parts[0])]
        return tuple(np.concatenate(column) for column in zip(*found))

    def _verified(self, words: np.ndarray, query: np.ndarray, max_distance: int, starts: np.ndarray,
                  lengths: np.ndarray, nexts: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, distances) within `max_distance` among the probed buckets (`starts` into the
        flattened tables, `lengths`), pruned by their next substrings first."""
        total = int(lengths.sum())
        # One gather of every probed bucket: entry k of bucket i is flat index starts[i] + k.
        flat = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        near_next = (np.bitwise_count(self.following.reshape(-1)[flat] ^ np.repeat(nexts, lengths))
                     <= np.repeat(allowed, lengths))
        candidates = self.positions.reshape(-1)[flat[near_next]]
        distances = np.bitwise_count(words[candidates] ^ query.view(np.uint64)).sum(axis=1)
        near = distances <= max_distance
        return candidates[near], distances[near]

    @cached_property
    def _next_substrings(self) -> list[tuple[int, int, None, None]]:
        """Per table, the shift and mask of the next substring (what `following` holds)."""
        spans = [(CODE_BITS - start - width, (1 << width) - 1, None, None) for _, start, width, _ in self._layout]
        return spans[1:] + spans[:1]


def _halves(n: int, split: bool) -> list[tuple[int, int]]:
    return [(0, n // 2), (n // 2, n)] if split and n > 1 else [(0, n)]


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """Two threads for wide searches: numpy releases the GIL in the gathers and popcounts."""
    return ThreadPoolExecutor(2, thread_name_prefix="mih")


def substring_widths(n: int, width: int | None = None) -> np.ndarray:
    """Bits per substring for `n` codes: about `width` (default log2(n)) each, within 16 to 22,
    widest first, summing to 256."""
    width = min(MAX_WIDTH, max(MIN_WIDTH, width or round(math.log2(max(n, 2)))))
    count = -(-CODE_BITS // width)
    narrow, wider = divmod(CODE_BITS, count)
    return np.array([narrow + 1] * wider + [narrow] * (count - wider), np.int16)


def plan(widths, max_distance: int) -> list[int]:
    """Shells (t_j + 1, 0 for a table not probed) per table summing to max_distance + 1, the
    pigeonhole bound; the extra shells go to the widest tables, whose buckets are smallest. A shell
    past a table's width probes all of it."""
    each, extra = divmod(max_distance + 1, len(widths))
    return [each + (j < extra) for j in range(len(widths))]


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


def _table(codes: np.ndarray, span: tuple[int, int], following: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """One substring's table: (offsets (2**width + 1,), positions by its value (N,) int32, the
    `following` substring's value at each of those positions (N,) uint32); spans are (first bit, width)."""
    keys = _substring(codes, *span)
    offsets = np.zeros((1 << span[1]) + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << span[1]), out=offsets[1:])
    order = np.argsort(keys.astype(np.uint32), kind="stable")
    return offsets, order.astype(np.int32), _substring(codes, *following)[order].astype(np.uint32)


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
