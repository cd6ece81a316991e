"""PDQ: Meta's 256-bit perceptual hash, the lingua franca of industry hash-sharing programs.

Two images are near-duplicates when the Hamming distance between their hashes is small (Meta's
confident-match threshold is 31 of 256 bits). PDQ survives re-encoding, resizing and mild colour
changes, but not rotation or mirroring; the eight dihedral variants of a query (computed in one pass
by `pdqhash`) cover the 90-degree turns and flips.

Each hash has a quality score (0-100) that measures how much gradient the image has: flat or
near-blank images hash to unstable values, so hashes below the policy's `min_quality` (50, as in
ThreatExchange) are never used for matching.

Text form: 64 lowercase hex characters, bit 0 of the hash vector first (most significant nibble),
which is ThreatExchange's format.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import ClassVar, Iterator

import numpy as np

from ..evidence import Evidence
from ..ids import RecordIds, prefix, split_record_id
from ..regions import MIN_SIDE, Region
from ..rules import Band, Fields, SignalRules
from ..verdict import VERDICTS, Reason
from .base import Context, Query, ReferenceImage, StoredSignal
from .mih import MultiIndex, compiled
from .pytx import validate

# Order of `pdqhash.compute_dihedral`, named as Pillow names the same transforms of the query
# (rotations are counter-clockwise).
DIHEDRAL_VARIANTS = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flip_vertical",
    "flip_horizontal",
    "transpose",
    "transverse",
)

CODE_BYTES = 32
MIN_REFERENCE_QUALITY = 50  # flatter images hash unstably and would match unrelated uploads
FAISS_FROM = 4096  # below this many codes numpy brute force beats faiss's import time
MIH_FROM = 1 << 19  # below this many codes a faiss scan (< 1 ms) is as fast as the tables (60-100 B a code)
# Measured on one core: a scan costs 2-4 ns a code (faiss), a probe or bucket entry of the tables
# ~9 ns in the compiled loop and ~25 ns in numpy's (scattered reads), a table search ~0.1 ms of
# set-up; the cheaper way is taken. Costs in codes scanned: (compiled, numpy).
SCAN_COST = (3, 10)
TABLES_OVERHEAD = 50_000  # the table search's set-up, in codes scanned
LOOKUPS_PER_CODE = 1 / 512  # exact lookups one code at a time in the tables, per indexed code; more: one sort


@dataclass(frozen=True)
class PdqHash:
    """One PDQ value: the hash, its quality, and which dihedral variant of the region it hashes."""

    hex: str
    quality: int
    variant: str = "original"

    def to_bytes(self) -> bytes:
        return bytes.fromhex(self.hex)

    def distance(self, other: "PdqHash | str") -> int:
        other_hex = other.hex if isinstance(other, PdqHash) else other
        return (int(self.hex, 16) ^ int(other_hex, 16)).bit_count()

    def to_dict(self) -> dict:
        return {"signal": PDQ.name, "hash": self.hex, "quality": self.quality, "variant": self.variant}


@dataclass(frozen=True)
class PdqRules(SignalRules):
    """The `pdq:` section: bands of Hamming distance (Meta's confident match is 31 of 256 bits),
    the quality below which a hash is not used, and whether rotations and mirrors are matched."""

    bands: tuple[Band, ...] = (Band(31, "bank", "pdq.distance<=31"), Band(52, "review", "pdq.distance<=52"))
    min_quality: int = 50
    on_low_quality: str = "allow"
    dihedral: bool = False

    @property
    def max_distance(self) -> int:
        return int(self.loosest)

    @classmethod
    def read(cls, signal: str, fields: Fields) -> "PdqRules":
        return cls(enabled=fields.boolean("enabled", True),
                   bands=fields.bands("thresholds", cls, signal, cls().bands),
                   min_quality=fields.integer("min_quality", 50, 0, 100),
                   on_low_quality=fields.choice("on_low_quality", "allow", VERDICTS),
                   dihedral=fields.boolean("dihedral", False))

    @classmethod
    def read_bound(cls, fields: Fields) -> int:
        return fields.integer(cls.bound_field, None, 0, 256)


@dataclass(frozen=True, eq=False)
class PdqIndex:
    """Exact Hamming search over PDQ codes; position i is record `id_at(i)`.

    Approximate vector search misses near-duplicates of binary hashes (measured: Chroma's HNSW over
    PDQ as +-1 floats found 86% of true matches within distance 31 among 100k hashes, 57% among
    300k), and a missed match is content that slips through. So lookups are exact: from MIH_FROM
    codes on, multi-index hashing (`moderate.signals.mih`: substring tables, then the full distance
    of each candidate) while its probes and candidates cost less than a scan; otherwise faiss
    `IndexBinaryFlat` (popcount over 32-byte codes, ~2 ms per query at 1M hashes), or numpy's
    `bitwise_count` for small banks, where importing faiss would cost more than the search.
    """

    codes: np.ndarray = field(repr=False)  # (N, 32) uint8
    records: RecordIds = field(repr=False)
    # (N,) bool: false for the hash of a reference too flat to match, kept so the reference is listed
    matchable: np.ndarray | None = field(default=None, repr=False)  # None: every hash
    tables: MultiIndex | None = field(default=None, repr=False)  # None: searched by scanning

    @classmethod
    def empty(cls) -> "PdqIndex":
        return cls.of_codes(np.zeros((0, CODE_BYTES), np.uint8), [])

    @classmethod
    def build(cls, records: list[tuple[str, PdqHash]]) -> "PdqIndex":
        """From (record id, PdqHash) pairs (the `StoredSignal` index contract)."""
        return cls.empty().appended(records)

    def appended(self, records: list[tuple[str, PdqHash]]) -> "PdqIndex":
        grown = self.appended_codes(_codes(records), [rid for rid, _ in records])
        usable = np.array([value.quality >= MIN_REFERENCE_QUALITY for _, value in records], bool)
        return replace(grown, matchable=np.concatenate([self._matchable(), usable]))

    def _matchable(self) -> np.ndarray:
        return np.ones(len(self), bool) if self.matchable is None else np.asarray(self.matchable)

    @property
    def record_ids(self) -> RecordIds:
        return self.records

    def arrays(self) -> dict:
        tables = self.tables or MultiIndex(np.zeros(0, np.int16), np.zeros(0, np.uint32), np.zeros((0, 0), np.int32),
                                           np.zeros((0, 0), np.uint32))
        return {"codes": self.codes, "offsets": self.records.offsets, "ids": self.records.blob,
                "matchable": self._matchable(), "mih_widths": tables.widths, "mih_offsets": tables.offsets,
                "mih_positions": tables.positions, "mih_following": tables.following}

    @classmethod
    def load(cls, files) -> "PdqIndex":
        """From what `arrays` saved (`files`: the catalog's `SavedFiles`), every array memory-mapped
        and the record ids too (a 10M bank's are ~700 MB); ValueError if inconsistent."""
        widths = files.array("mih_widths")
        # Plain views of the maps: numpy's memmap subclass adds microseconds to every gather.
        tables = (MultiIndex(np.asarray(widths), np.asarray(files.array("mih_offsets")),
                             np.asarray(files.array("mih_positions")), np.asarray(files.array("mih_following")))
                  if len(widths) else None)
        index = cls(files.array("codes"), RecordIds(files.array("offsets"), _mapped(files.path("ids"))),
                    files.array("matchable"), tables)
        if (index.codes.ndim != 2 or index.codes.shape[1] != CODE_BYTES or len(index.records) != len(index.codes)
                or len(index.matchable) != len(index.codes)):
            raise ValueError("pdq index files do not agree")
        index.records.check()
        if tables is not None:
            tables.check(len(index))
        return index

    @classmethod
    def of_codes(cls, codes: np.ndarray, ids: list[str]) -> "PdqIndex":
        return cls(np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES), RecordIds.build(ids))

    def __len__(self) -> int:
        return self.codes.shape[0]

    def id_at(self, position: int) -> str:
        return self.records.id_at(position)

    def ids(self) -> Iterator[str]:
        return iter(self.records)

    def bank_mask(self, bank: str) -> np.ndarray:
        """Which positions belong to `bank` (record ids start with `BANK::`), without decoding ids."""
        return self.records.prefix_mask(f"{bank}::")

    def prefix_mask(self, prefix: str) -> np.ndarray:
        return self.records.prefix_mask(prefix)

    def first_hash_mask(self) -> np.ndarray:
        """Positions holding a reference's first hash: one per reference."""
        return self.records.first_hash_mask()

    def appended_codes(self, codes: np.ndarray, ids: list[str]) -> "PdqIndex":
        """With `codes` ((k, 32) uint8) as positions N..N+k-1; the substring tables are extended
        (or built, once there are MIH_FROM codes), not rebuilt."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES)
        grown = np.concatenate([self.codes, codes])
        if self.tables is not None and not self.tables.outgrown(len(grown)):
            tables = self.tables.appended(grown, codes)
        else:
            tables = MultiIndex.build(grown) if len(grown) >= MIH_FROM or self.tables is not None else None
        matchable = None if self.matchable is None else np.concatenate([self.matchable, np.ones(len(codes), bool)])
        return PdqIndex(grown, self.records.appended(ids), matchable, tables)

    def indexed(self) -> "PdqIndex":
        """A copy with substring tables whatever its size (banks get them from MIH_FROM codes on)."""
        return replace(self, tables=self.tables or MultiIndex.build(np.asarray(self.codes)))

    def positions_of(self, codes: np.ndarray) -> list[list[int]]:
        """For each code, the positions holding exactly that code, ascending, matchable or not: a
        few codes in an index with substring tables are looked up in them at radius 0 (~0.1 ms
        each), more by one sorted search over the whole index (seconds at 10M codes)."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES)
        if len(self) == 0:
            return [[] for _ in range(len(codes))]
        if self.tables is not None and len(codes) <= len(self) * LOOKUPS_PER_CODE:
            words = np.asarray(self.codes).view(np.uint64)
            return [self.tables.search(words, code, 0, 1 << 62)[0].tolist() for code in codes]
        keys = np.ascontiguousarray(self.codes).view(f"V{CODE_BYTES}").ravel()
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        wanted = codes.view(f"V{CODE_BYTES}").ravel()
        lo = np.searchsorted(ordered, wanted, side="left")
        hi = np.searchsorted(ordered, wanted, side="right")
        return [order[a:b].tolist() for a, b in zip(lo, hi)]

    def without(self, drop: np.ndarray) -> "PdqIndex":
        """A copy without the positions where `drop` is true."""
        keep = ~np.asarray(drop, dtype=bool)
        tables = self.tables.without(keep) if self.tables is not None else None
        return PdqIndex(np.ascontiguousarray(self.codes[keep]), self.records.kept(keep), self._matchable()[keep], tables)

    def search(self, queries: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
        """All (query row, position, distance) with distance <= max_distance, matchable hashes only,
        sorted; exactly what a linear scan finds, whichever way each query is searched."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, CODE_BYTES)
        if len(self) == 0 or len(queries) == 0:
            return []
        found, scanned = [], list(range(len(queries)))
        if self.tables is not None:
            words, scanned = np.asarray(self.codes).view(np.uint64), []
            budget = (len(self) - TABLES_OVERHEAD) // SCAN_COST[not compiled()]
            for q, query in enumerate(queries):
                hits = self.tables.search(words, query, max_distance, budget)
                if hits is None:
                    scanned.append(q)
                else:
                    found += [(q, position, distance) for position, distance in zip(*(h.tolist() for h in hits))]
        if scanned:
            found += [(scanned[q], position, distance)
                      for q, position, distance in self._scan(queries[scanned], max_distance)]
        found.sort()
        if self._all_matchable:
            return found
        return [hit for hit in found if self.matchable[hit[1]]]

    @cached_property
    def _all_matchable(self) -> bool:
        """Asked once, not per search: at 10M hashes the mask is 10 MB to read."""
        return self.matchable is None or bool(np.all(self.matchable))

    def _scan(self, queries: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
        if len(self) < FAISS_FROM:
            return _numpy_search(self.codes, queries, max_distance)
        lims, distances, positions = self._faiss().range_search(queries, max_distance + 1)  # radius is exclusive
        return [(q, int(positions[k]), int(distances[k])) for q in range(len(queries))
                for k in range(lims[q], lims[q + 1])]

    def _faiss(self):
        cached = self.__dict__.get("_faiss_index")
        if cached is None:
            import faiss

            # One query batch at a time: OpenMP's thread hand-off costs more than it saves (measured
            # p99 17 ms with threads vs 7 ms without at 1M codes); workers parallelize across processes.
            faiss.omp_set_num_threads(1)
            cached = faiss.IndexBinaryFlat(CODE_BYTES * 8)
            cached.add(np.ascontiguousarray(self.codes))
            object.__setattr__(self, "_faiss_index", cached)
        return cached


def _mapped(path) -> bytes | mmap.mmap:
    """A file's bytes, memory-mapped: pages are read when touched, not at load."""
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(fh.fileno()).st_size else b""


def _codes(records: list[tuple[str, PdqHash]]) -> np.ndarray:
    return np.frombuffer(b"".join(value.to_bytes() for _, value in records), dtype=np.uint8).reshape(-1, CODE_BYTES)


def _numpy_search(codes: np.ndarray, queries: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    out = []
    for q, query in enumerate(queries):
        distances = np.bitwise_count(np.bitwise_xor(codes, query)).sum(axis=1)
        for position in np.flatnonzero(distances <= max_distance):
            out.append((q, int(position), int(distances[position])))
    return out


class PdqSignal(StoredSignal):
    """Computes, parses and compares PDQ hashes, and matches them against the exact index."""

    name = "pdq"
    measure = "distance"
    rules: ClassVar[type[PdqRules]] = PdqRules
    listable = True
    list_types = {"pdq": "pdq"}  # python-threatexchange's `PdqSignal`
    search_every_frame = True  # a hash per frame costs milliseconds
    collection = "moderate-pdq"
    index = PdqIndex
    bits = 256
    # Pixels PDQ's own filter gets (longest side). Measured on 18 photos of 1200-4000 px against PDQ
    # over the full decode (how industry hash lists are made): mean 4.9 / max 10 bits apart at 1024
    # (JPEGs DCT-scaled to >= 512 first), mean 10 / max 16 at 512; 46 against 27 ms per image.
    working_size = 1024
    # Chroma stores a vector with every record; a PDQ record's vector is the hash itself as sixteen
    # 16-bit words (exact in float32), so the record is self-contained without a duplicate field.
    vector_words = 16

    def compute(self, pixels: np.ndarray, dihedral: bool = False) -> tuple[PdqHash, ...]:
        """Hash RGB pixels (H x W x 3 uint8); with `dihedral`, all eight variants, original first."""
        import pdqhash  # compiled extension: imported on first use, not at `moderate --help`

        pixels = np.ascontiguousarray(pixels)
        # Under MIN_SIDE a side, pdqhash upscales noise into a confident hash (15x15 of noise:
        # quality 100): such a hash must never be matched, so its quality is 0.
        usable = min(pixels.shape[:2]) >= MIN_SIDE
        if not dihedral:
            vector, quality = pdqhash.compute(pixels)
            return (PdqHash(_bits_to_hex(vector), int(quality) if usable else 0),)
        vectors, quality = pdqhash.compute_dihedral(pixels)
        quality = quality if usable else 0
        return tuple(
            PdqHash(_bits_to_hex(vector), int(quality), variant)
            for vector, variant in zip(vectors, DIHEDRAL_VARIANTS)
        )

    def listed_value(self, text: str, list_type: str, flag: int) -> PdqHash:
        return PdqHash(text, flag)

    def parse(self, text: str, list_type: str | None = "pdq") -> str:
        """Validate a hash from a list or a lookup (python-threatexchange's `PdqSignal`, and never
        the all-zero hash); returns its canonical hex or raises ValueError naming the problem."""
        value = validate("pdq", text, "pdq hash")
        if value == "0" * 2 * CODE_BYTES:
            raise ValueError("pdq hash is all zeros (the hash of a blank image)")
        return value

    def to_vectors(self, hex_values: list[str]) -> np.ndarray:
        words = np.frombuffer(b"".join(bytes.fromhex(h) for h in hex_values), dtype=">u2")
        return words.astype(np.float32).reshape(-1, self.vector_words)

    def from_vector(self, vector) -> str:
        words = np.rint(np.asarray(vector, dtype=np.float64)).astype(">u2")
        return words.tobytes().hex()


    # -- storage (see `moderate.signals.base.StoredSignal`) -------------------------------------

    def reference_values(self, image: ReferenceImage) -> list[PdqHash]:
        """PDQ of the reference region, and of its de-bordered inside and the policy's parts, as
        queries get them. Hashes too flat to match reliably (quality < MIN_REFERENCE_QUALITY) are
        left out, except the whole region's when nothing else is usable: kept, never matched, it
        lists the reference with the signals that do work for it (digests, keypoints, embeddings)."""
        from ..media.pixels import Frame
        from ..regions import deborder, part_of

        inner = Frame(image.frame.index, image.box.w, image.box.h, image.box.crop(image.frame))
        regions = [Region.whole(inner)]
        if image.regions.deborder:
            regions += [r for r in [deborder(inner)] if r is not None]
        regions += [part_of(inner, part) for part in image.regions.parts]
        values = [self.compute(r.crop(inner))[0] for r in regions if r.w >= MIN_SIDE and r.h >= MIN_SIDE]
        usable = list({v.hex: v for v in values if v.quality >= MIN_REFERENCE_QUALITY}.values())
        return usable or [self.compute(inner.pixels)[0]]

    def encode(self, values: list[PdqHash]) -> dict:
        return {"embeddings": self.to_vectors([v.hex for v in values])}

    def decode(self, page: dict) -> list[PdqHash]:
        """Records written before qualities were kept are of usable hashes (flatter ones were refused)."""
        return [PdqHash(self.from_vector(vector), int((md or {}).get("quality", 100)))
                for vector, md in zip(page["embeddings"], page["metadatas"])]

    def record_metadata(self, value: PdqHash) -> dict:
        return {"quality": value.quality}

    # -- matching (see `moderate.signals.base`) -------------------------------------------------

    def find(self, query: Query, context: Context, rules: PdqRules) -> list[Evidence]:
        """Every reference hash within the loosest band of any region's hash (and, with `dihedral`,
        of its rotations and mirrors); hashes below `min_quality` are not used."""
        hashed = [(region, self.compute(region.crop(query.frame), rules.dihedral)) for region in query.regions]
        used = [(region, h) for region, hashes in hashed for h in hashes if h.quality >= rules.min_quality]
        query.computed[self.name] = hashed
        query.computed["pdq.used"] = used
        return self.lookup(context, used, rules.max_distance)

    def lookup(self, context: Context, used: list[tuple[Region, PdqHash]], max_distance: int) -> list[Evidence]:
        if not used or not context.banks:
            return []
        codes = np.frombuffer(b"".join(h.to_bytes() for _, h in used), dtype=np.uint8)
        found = []
        for row, position, distance in context.snapshot.pdq.search(codes, max_distance):
            bank, reference_id = split_record_id(context.snapshot.pdq.id_at(position))
            if bank in context.banks:
                region, value = used[row]
                found.append(Evidence(self.name, self.measure, distance, bank, reference_id, region, value.variant))
        return found

    def observations(self, query: Query, rules: PdqRules) -> list[Reason]:
        region, hashes = query.computed[self.name][0]
        quality = hashes[0].quality
        if quality >= rules.min_quality:
            return []
        detail = f"PDQ quality {quality} is below {rules.min_quality}: the hash is not used for matching"
        return [Reason("pdq.low_quality", rules.on_low_quality, Evidence(self.name, "score", quality, region=region),
                       detail)]

    def nearest(self, reference: tuple[str, str], query: Query, context: Context,
                rules: PdqRules) -> tuple[Evidence | None, str | None, bool]:
        """The closest of the hashes check used (its regions, variants and quality floor) to any of
        the reference's hashes; a note when only a rotation or mirror would have matched."""
        index = context.snapshot.pdq
        hashes = index.codes[np.flatnonzero(index.prefix_mask(prefix(*reference)))]
        used = query.computed["pdq.used"]
        if not used:
            return (None, f"the query's PDQ quality is below min_quality ({rules.min_quality}): check does not use its hash",
                    False)
        distance, region, variant = min(((_nearest_distance(hashes, h), region, h.variant) for region, h in used),
                                        key=lambda f: f[0])
        closest = Evidence(self.name, self.measure, distance, reference[0], reference[1], region, variant)
        if rules.band(distance) or rules.dihedral:
            return closest, None, True
        turned = min(((_nearest_distance(hashes, h), h.variant)
                      for h in self.compute(region.crop(query.frame), dihedral=True)[1:]), default=None)
        if turned and rules.band(turned[0]):
            return closest, (f"the {turned[1]} variant is {turned[0]} bits away, but this policy does not match "
                             f"rotations and mirrors (pdq.dihedral: false)"), True
        return closest, None, True

    def holds(self, reference: tuple[str, str], context: Context) -> bool:
        return bool(context.snapshot.pdq.prefix_mask(prefix(*reference)).any())

    def search(self, query: Query, context: Context, rules: PdqRules, min_similarity: float) -> list[Evidence]:
        """Whole frames and their rotations and mirrors, within `min_similarity`; hashes below the
        policy's `min_quality` are not used."""
        hashes = self.compute(query.frame.pixels, dihedral=True)
        used = [(query.regions[0], h) for h in hashes if h.quality >= rules.min_quality]
        return self.lookup(context, used, int((1.0 - min_similarity) * self.bits))

    def similarity(self, value: float) -> float:
        """1 - distance / 256: 1.0 is the same hash, 0.88 Meta's confident match, unrelated photos near 0.5."""
        return 1.0 - value / self.bits


def _nearest_distance(hashes: np.ndarray, value: PdqHash) -> int:
    query = np.frombuffer(value.to_bytes(), np.uint8)
    return int(np.bitwise_count(np.bitwise_xor(hashes, query)).sum(axis=1).min()) if len(hashes) else 256


def _bits_to_hex(vector: np.ndarray) -> str:
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes().hex()


PDQ = PdqSignal()
