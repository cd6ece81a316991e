"""The exact PDQ index, derived from Chroma and persisted in the data folder.

Approximate vector search misses near-duplicates of binary hashes (measured: Chroma's HNSW over PDQ
as +-1 floats found 86% of true matches within distance 31 among 100k hashes, 57% among 300k), and
a missed match is content that slips through. So PDQ lookups are exhaustive: faiss
`IndexBinaryFlat` (popcount over 32-byte codes, ~2 ms per query at 1M hashes), or numpy's
`bitwise_count` for small banks, where importing faiss would cost more than the search.

Chroma stays the system of record; a `Snapshot` is what one process derived from it at a given
store generation: the banks' settings and every PDQ code with its record id. It is saved as memory-
mapped arrays so that a check loads it in milliseconds. Readers compare generations (or, embedded,
just the database files' stamp) and rebuild when stale; writers update the snapshot they hold and
save it with the new generation, so the next process does not rebuild after every `bank add`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import StoreError
from . import Store

CODE_BYTES = 32
FAISS_FROM = 4096  # below this many codes numpy brute force beats faiss's import time


@dataclass(frozen=True, eq=False)
class RecordIds:
    """Chroma record ids (`BANK::REFERENCE_ID::N`) of an index's rows, packed into one blob so that
    a million of them load in milliseconds and bank masks need no decoding."""

    offsets: np.ndarray = field(repr=False)  # (N + 1,) int64 into `blob`
    blob: bytes = field(repr=False)  # utf-8 record ids, concatenated

    @classmethod
    def build(cls, ids: list[str]) -> "RecordIds":
        encoded = [i.encode() for i in ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(offsets, b"".join(encoded))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def id_at(self, position: int) -> str:
        return bytes(self.blob[self.offsets[position] : self.offsets[position + 1]]).decode()

    def __iter__(self) -> Iterator[str]:
        return (self.id_at(i) for i in range(len(self)))

    def prefix_mask(self, prefix: str) -> np.ndarray:
        """Positions whose record id starts with `prefix`."""
        raw = prefix.encode()
        starts, lengths = self._spans()
        return self._bytes_equal(starts, lengths > len(raw), raw)

    def first_hash_mask(self) -> np.ndarray:
        """Positions holding a reference's first record (ids ending with `::0`): one per reference."""
        starts, lengths = self._spans()
        return self._bytes_equal(starts + lengths - 3, lengths >= 3, b"::0")

    def _spans(self) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.asarray(self.offsets)
        return offsets[:-1], np.diff(offsets)

    def _bytes_equal(self, at: np.ndarray, candidates: np.ndarray, pattern: bytes) -> np.ndarray:
        blob = np.frombuffer(self.blob, dtype=np.uint8)
        mask = candidates.copy()
        for k, byte in enumerate(pattern):
            mask &= blob[np.where(mask, at + k, 0)] == byte
        return mask

    def appended(self, ids: list[str]) -> "RecordIds":
        extra = RecordIds.build(ids)  # only the new ids are encoded; the rest is copied as arrays
        return RecordIds(np.concatenate([self.offsets, extra.offsets[1:] + self.offsets[-1]]), bytes(self.blob) + extra.blob)

    def kept(self, keep: np.ndarray) -> "RecordIds":
        """A copy with only the positions where `keep` is true (array operations, no decoding)."""
        _, lengths = self._spans()
        blob = np.frombuffer(self.blob, dtype=np.uint8)[np.repeat(keep, lengths)].tobytes() if len(self.blob) else b""
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(lengths[keep], out=offsets[1:])
        return RecordIds(offsets, blob)


@dataclass(frozen=True, eq=False)
class PdqIndex:
    """Exact Hamming search over PDQ codes; position i is record `id_at(i)`."""

    codes: np.ndarray = field(repr=False)  # (N, 32) uint8
    records: RecordIds = field(repr=False)

    @classmethod
    def empty(cls) -> "PdqIndex":
        return cls.build(np.zeros((0, CODE_BYTES), np.uint8), [])

    @classmethod
    def build(cls, codes: np.ndarray, ids: list[str]) -> "PdqIndex":
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

    def appended(self, codes: np.ndarray, ids: list[str]) -> "PdqIndex":
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES)
        return PdqIndex(np.concatenate([self.codes, codes]), self.records.appended(ids))

    def positions_of(self, codes: np.ndarray) -> list[list[int]]:
        """For each code, the positions holding exactly that code (a sorted search, no popcount)."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, CODE_BYTES)
        if len(self) == 0:
            return [[] for _ in range(len(codes))]
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
        return PdqIndex(np.ascontiguousarray(self.codes[keep]), self.records.kept(keep))

    def search(self, queries: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
        """All (query row, position, distance) with distance <= max_distance."""
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, CODE_BYTES)
        if len(self) == 0 or len(queries) == 0:
            return []
        if len(self) < FAISS_FROM:
            return _numpy_search(self.codes, queries, max_distance)
        lims, distances, positions = self._faiss().range_search(queries, max_distance + 1)  # radius is exclusive
        out = []
        for q in range(len(queries)):
            for k in range(lims[q], lims[q + 1]):
                out.append((q, int(positions[k]), int(distances[k])))
        return out

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


@dataclass(frozen=True, eq=False)
class KeypointIndex:
    """Every reference image's ORB descriptors, pooled, for nearest-neighbour search.

    Row i of `descriptors` belongs to image `owner[i]` (record `images.id_at(owner[i])`), at
    `points[i]` in that image's pixels, from its mirror image when `mirrored[i]`. Small pools are
    searched exhaustively; from `IVF_FROM` descriptors on, through a faiss inverted file with about
    `IVF_LIST` descriptors per list (measured on the robustness corpus, 21k descriptors: 108 ms
    exhaustive against 15 ms with 64 lists and 8 probed, with identical recall).
    """

    images: RecordIds = field(repr=False)
    sizes: np.ndarray = field(repr=False)  # (K, 2) int32: width, height of each image
    descriptors: np.ndarray = field(repr=False)  # (M, 32) uint8
    points: np.ndarray = field(repr=False)  # (M, 2) float32
    owner: np.ndarray = field(repr=False)  # (M,) int32
    mirrored: np.ndarray = field(repr=False)  # (M,) bool

    IVF_FROM = 8192
    IVF_LIST = 300
    IVF_PROBE = 8

    @classmethod
    def empty(cls) -> "KeypointIndex":
        return cls.build([])

    @classmethod
    def build(cls, records: list) -> "KeypointIndex":
        """From (record id, KeypointSet) pairs."""
        empty = cls(RecordIds.build([]), np.zeros((0, 2), np.int32), np.zeros((0, 32), np.uint8),
                    np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros(0, bool))
        return empty.appended(records) if records else empty

    def __len__(self) -> int:
        return len(self.images)

    def appended(self, records: list) -> "KeypointIndex":
        grown = self._appended(records)
        if len(self.descriptors) >= self.IVF_FROM:  # carry the trained inverted file: adding is cheap, training is not
            index = self._faiss()
            index.add(np.ascontiguousarray(grown.descriptors[len(self.descriptors):]))
            object.__setattr__(grown, "_faiss_index", index)
        return grown

    def _appended(self, records: list) -> "KeypointIndex":
        first = len(self)
        parts = [(k.descriptors, k.points, False, k) for _, k in records] + [
            (k.mirrored_descriptors, k.mirrored_points, True, k) for _, k in records]
        rows = [first + i for i in range(len(records))] * 2
        return KeypointIndex(
            self.images.appended([rid for rid, _ in records]),
            np.concatenate([self.sizes, np.array([[k.width, k.height] for _, k in records], np.int32).reshape(-1, 2)]),
            np.concatenate([self.descriptors] + [d for d, _, _, _ in parts]),
            np.concatenate([self.points] + [p for _, p, _, _ in parts]),
            np.concatenate([self.owner] + [np.full(len(d), row, np.int32) for (d, _, _, _), row in zip(parts, rows)]),
            np.concatenate([self.mirrored] + [np.full(len(d), m, bool) for d, _, m, _ in parts]),
        )

    def without(self, drop: np.ndarray) -> "KeypointIndex":
        """A copy without the images where `drop` is true (and their descriptors)."""
        keep = ~np.asarray(drop, dtype=bool)
        renumber = np.cumsum(keep) - 1
        rows = keep[self.owner]
        return KeypointIndex(self.images.kept(keep), np.ascontiguousarray(self.sizes[keep]),
                             np.ascontiguousarray(self.descriptors[rows]), np.ascontiguousarray(self.points[rows]),
                             renumber[self.owner[rows]].astype(np.int32), np.ascontiguousarray(self.mirrored[rows]))

    def nearest(self, descriptors: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows), each (Q, k): the `k` nearest pooled descriptors of each query
        descriptor, nearest first; rows are -1 where the pool has fewer than `k`."""
        if len(self.descriptors) == 0 or len(descriptors) == 0:
            return np.zeros((len(descriptors), k), np.int32), np.full((len(descriptors), k), -1, np.int64)
        return self._faiss().search(np.ascontiguousarray(descriptors, dtype=np.uint8), k)

    def load_from(self, path: Path) -> None:
        """Use the inverted file saved at `path` if it covers exactly these descriptors (lazily).

        Writers save it with each snapshot and carry it through appends: training and filling it
        from scratch takes 20-30 s at 1M descriptors, loading it 50 ms."""
        object.__setattr__(self, "_ivf_file", path)

    def _faiss(self):
        cached = self.__dict__.get("_faiss_index")
        saved = self.__dict__.get("_ivf_file")
        if cached is None and saved is not None and len(self.descriptors) >= self.IVF_FROM:
            import faiss

            faiss.omp_set_num_threads(1)
            try:
                loaded = faiss.read_index_binary(str(saved))
            except RuntimeError:  # missing or damaged: rebuilt below
                loaded = None
            if loaded is not None and loaded.ntotal == len(self.descriptors):
                loaded.nprobe = self.IVF_PROBE
                cached = loaded
                object.__setattr__(self, "_faiss_index", cached)
        if cached is None:
            import faiss

            faiss.omp_set_num_threads(1)
            data = np.ascontiguousarray(self.descriptors)
            if len(data) < self.IVF_FROM:
                cached = faiss.IndexBinaryFlat(256)
            else:
                lists = len(data) // self.IVF_LIST
                cached = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(256), 256, lists)
                cached.cp.niter = 10  # measured at 1M: 12 s to train on 16 per list, 4 s on 8, same recall
                cached.cp.min_points_per_centroid = 4  # 8 per list is enough here; faiss would warn below 39
                sample = data[np.random.default_rng(0).choice(len(data), min(len(data), lists * 8), replace=False)]
                cached.train(sample)
                cached.nprobe = self.IVF_PROBE
            cached.add(data)
            object.__setattr__(self, "_faiss_index", cached)
        return cached


def _numpy_search(codes: np.ndarray, queries: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    out = []
    for q, query in enumerate(queries):
        distances = np.bitwise_count(np.bitwise_xor(codes, query)).sum(axis=1)
        for position in np.flatnonzero(distances <= max_distance):
            out.append((q, int(position), int(distances[position])))
    return out


@dataclass(frozen=True)
class Snapshot:
    """What the matcher needs, derived from the store at one generation."""

    generation: str
    banks: dict  # name -> bank record (action, description, enabled, created_at)
    pdq: PdqIndex
    stamp: list | None = None  # the store's stamp when saved (embedded only)
    keypoints: KeypointIndex = field(default_factory=KeypointIndex.empty)


class Catalog:
    """Keeps the persisted snapshot of a store current, for readers and for writers."""

    def __init__(self, store: Store):
        self.store = store
        key = "embedded" if not store.chroma_url else hashlib.sha256(store.chroma_url.encode()).hexdigest()[:16]
        self.dir = store.data_dir / "index" / key
        self._snapshot: Snapshot | None = None

    # -- reading --------------------------------------------------------------------------------

    def current(self) -> Snapshot:
        """The snapshot at the store's current generation, loading or rebuilding it as needed."""
        if self._snapshot is not None and self._stamp_matches(self._snapshot):
            return self._snapshot
        saved = self._load()
        if saved is not None and self._stamp_matches(saved):
            self._snapshot = saved
            return saved
        generation = self.store.generation()
        if saved is not None and saved.generation == generation:
            self._snapshot = saved
            if self.store.chroma_url is None:
                with self._locked():
                    self._save(saved)  # refresh the stamp: Chroma touches its files even on reads
            return self._snapshot
        with self._locked():
            self._snapshot = self._rebuild(generation)
            self._save(self._snapshot)
        return self._snapshot

    def _stamp_matches(self, snapshot: Snapshot) -> bool:
        return snapshot.stamp is not None and snapshot.stamp == self.store.stamp()

    def _rebuild(self, generation: str) -> Snapshot:
        banks = self.store.bank_records()
        ids: list[str] = []
        codes: list[bytes] = []
        for rid, hex_value, _ in self.store.pdq_records():
            ids.append(rid)
            codes.append(bytes.fromhex(hex_value))
        array = np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(-1, CODE_BYTES)
        keypoints = KeypointIndex.build(list(self.store.keypoint_records()))
        return Snapshot(generation, banks, PdqIndex.build(array, ids), keypoints=keypoints)

    # -- writing --------------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator["Write"]:
        """Hold the lock and hand out the current snapshot; publish a new generation if Chroma changed.

        The body calls `write.touch()` before writing to Chroma and `write.update(new_snapshot)`
        after. `touch` moves the store's generation on *before* the first write, so a writer that
        dies part way (killed, out of memory) leaves every saved snapshot stale and the next reader
        rebuilds from what Chroma holds. The updated snapshot is saved only if nobody else wrote in
        between (several hosts can share one Chroma server; the lock is only this data folder's).
        """
        with self._locked():
            start = self._snapshot or self._load()
            generation = self.store.generation()
            if start is None or start.generation != generation:
                start = self._rebuild(generation)
            write = Write(start, self.store.bump)
            try:
                yield write
            finally:
                if write.touched:
                    unchanged = self.store.generation() == write.pending
                    final = self.store.bump()
                    if write.updated and unchanged:
                        self._save(replace(write.snapshot, generation=final))
                    else:
                        self._snapshot = None

    # -- persistence -------------------------------------------------------------------------------

    @contextmanager
    def _locked(self):
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fh = open(self.dir / ".lock", "w")
        except OSError as exc:
            raise StoreError(f"{self.dir}: cannot use the index folder: {exc.strerror}") from None
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self) -> Snapshot | None:
        """The saved snapshot, or None when absent or inconsistent (then it is rebuilt)."""
        try:
            meta = json.loads((self.dir / "snapshot.json").read_text())
            tag = meta["tag"]
            arrays = {name: np.load(self.dir / f"{tag}.{name}.npy", mmap_mode="r") for name in _ARRAYS}
            blobs = {name: (self.dir / f"{tag}.{name}").read_bytes() for name in _BLOBS}
            pdq = PdqIndex(arrays["pdq-codes"], RecordIds(arrays["pdq-offsets"], blobs["pdq-ids"]))
            keypoints = KeypointIndex(RecordIds(arrays["kp-offsets"], blobs["kp-ids"]), arrays["kp-sizes"],
                                      arrays["kp-descriptors"], arrays["kp-points"], arrays["kp-owner"],
                                      arrays["kp-mirrored"])
            keypoints.load_from(self.dir / f"{tag}.kp-ivf")
        except (ValueError, KeyError, TypeError, OSError):
            return None
        consistent = (
            pdq.codes.ndim == 2 and pdq.codes.shape[1] == CODE_BYTES and len(pdq.records) == len(pdq.codes)
            and int(pdq.records.offsets[-1]) == len(pdq.records.blob)
            and len(keypoints.images) == len(keypoints.sizes)
            and int(keypoints.images.offsets[-1]) == len(keypoints.images.blob)
            and len({len(keypoints.descriptors), len(keypoints.points), len(keypoints.owner), len(keypoints.mirrored)}) == 1
        )
        if not consistent:
            return None
        return Snapshot(meta["generation"], meta["banks"], pdq, meta.get("stamp"), keypoints)

    def _save(self, snapshot: Snapshot) -> None:
        """Write each file under a temporary name and rename it, `snapshot.json` last."""
        tag = "s" + hashlib.sha256(snapshot.generation.encode()).hexdigest()[:16]
        pending = f".{os.getpid()}.tmp"
        pdq, kp = snapshot.pdq, snapshot.keypoints
        arrays = {"pdq-codes": pdq.codes, "pdq-offsets": pdq.records.offsets, "kp-offsets": kp.images.offsets,
                  "kp-sizes": kp.sizes, "kp-descriptors": kp.descriptors, "kp-points": kp.points,
                  "kp-owner": kp.owner, "kp-mirrored": kp.mirrored}
        blobs = {"pdq-ids": pdq.records.blob, "kp-ids": kp.images.blob}
        files = [(f"{name}.npy", lambda f, a=array: np.save(f, np.asarray(a))) for name, array in arrays.items()]
        files += [(name, lambda f, b=blob: f.write(bytes(b))) for name, blob in blobs.items()]
        if len(kp.descriptors) >= KeypointIndex.IVF_FROM:
            files.append(("kp-ivf", lambda f: f.write(_ivf_bytes(kp))))
        for name, write in files:
            target = self.dir / f"{tag}.{name}"
            with open(str(target) + pending, "wb") as fh:
                write(fh)
            os.replace(str(target) + pending, target)
        stamp = self.store.stamp()
        meta = {"generation": snapshot.generation, "tag": tag, "stamp": stamp, "banks": snapshot.banks}
        tmp = self.dir / f"snapshot.json{pending}"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.dir / "snapshot.json")
        self._snapshot = replace(snapshot, stamp=stamp)
        for old in self.dir.glob("*"):
            stale = old.name.startswith(("s", "pdq-")) and not old.name.startswith(f"{tag}.")
            if (stale or old.name.endswith(".tmp")) and old.name != "snapshot.json":
                old.unlink(missing_ok=True)


def _ivf_bytes(keypoints: KeypointIndex) -> bytes:
    import faiss

    return faiss.serialize_index_binary(keypoints._faiss()).tobytes()


_ARRAYS = ("pdq-codes", "pdq-offsets", "kp-offsets", "kp-sizes", "kp-descriptors", "kp-points", "kp-owner", "kp-mirrored")
_BLOBS = ("pdq-ids", "kp-ids")


@dataclass
class Write:
    """A write in progress under the catalog's lock."""

    snapshot: Snapshot
    bump: Callable[[], str]
    pending: str | None = None  # the generation set before the first Chroma write
    updated: bool = False

    @property
    def touched(self) -> bool:
        return self.pending is not None

    def touch(self) -> None:
        if self.pending is None:
            self.pending = self.bump()

    def update(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.updated = True
