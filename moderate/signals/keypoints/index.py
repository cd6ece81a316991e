"""The pooled descriptor index of every reference image's keypoints, derived from Chroma."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...ids import RecordIds

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

    @property
    def record_ids(self) -> RecordIds:
        return self.images

    def arrays(self) -> dict:
        """What the catalog saves: the arrays, and the trained inverted file once there is one
        (training and filling it from scratch takes 20-30 s at 1M descriptors, loading 50 ms)."""
        out = {"offsets": self.images.offsets, "ids": self.images.blob, "sizes": self.sizes,
               "descriptors": self.descriptors, "points": self.points, "owner": self.owner, "mirrored": self.mirrored}
        if len(self.descriptors) >= self.IVF_FROM:
            out["ivf"] = lambda: _ivf_bytes(self)
        return out

    @classmethod
    def load(cls, files) -> "KeypointIndex":
        """From what `arrays` saved; the inverted file is read on first search. ValueError if inconsistent."""
        index = cls(RecordIds(files.array("offsets"), files.blob("ids")), files.array("sizes"),
                    files.array("descriptors"), files.array("points"), files.array("owner"), files.array("mirrored"))
        index.images.check()
        if len(index.images) != len(index.sizes) or len({len(index.descriptors), len(index.points), len(index.owner),
                                                         len(index.mirrored)}) != 1:
            raise ValueError("keypoint index files do not agree")
        index.load_from(files.path("ivf"))
        return index

    def appended(self, records: list) -> "KeypointIndex":
        grown = self._appended(records)
        if len(self.descriptors) >= self.IVF_FROM:  # carry the trained inverted file: adding is cheap, training is not
            import faiss

            # a copy: readers of this snapshot (a server's in-flight checks) keep searching the old one,
            # whose rows must never run past this snapshot's arrays
            index = faiss.clone_binary_index(self._faiss())
            index.nprobe = self.IVF_PROBE
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


def _ivf_bytes(keypoints: KeypointIndex) -> bytes:
    import faiss

    return faiss.serialize_index_binary(keypoints._faiss()).tobytes()
