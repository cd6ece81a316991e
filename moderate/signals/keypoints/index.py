"""The pooled descriptor index of every reference image's keypoints, derived from Chroma."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...ids import RecordIds

@dataclass(frozen=True, eq=False)
class KeypointIndex:
    """Every reference image's ORB corners, and the pool of its strongest ones for nearest-neighbour search.

    Row i of `descriptors` belongs to image `owner[i]` (record `images.id_at(owner[i])`), at
    `points[i]` in that image's pixels. An image's rows are contiguous and in image order, the
    strongest of each pyramid level in turn first. `pooled` (P,) are the rows searched: each
    image's first `POOLED` (a candidate found through them is verified with all its rows). The
    pool has three regimes:
    - under `IVF_FROM` descriptors, exhaustive search;
    - up to `WORDS_FROM`, a faiss inverted file trained on the pool itself (about `IVF_LIST`
      descriptors a list, 8 probed), trained again by the writer whenever the pool has doubled
      since (1-10 s below 1M descriptors), so its lists never grow without bound;
    - from `WORDS_FROM` on, an inverted file whose lists are the shipped vocabulary's visual words
      (`vocabulary.npy`, trained on tuning photos by `python -m bench.vocabulary`), each descriptor
      in the list of its nearest word found through an HNSW graph over the words: nothing is ever
      trained on a big bank (minutes at 10M). Lists grow as the pool over 16,384 words; a query
      descriptor reads its nearest words' lists up to `WORD_SCAN` entries, so from about 10,000
      references on a check reads no more as the bank grows.
    Before, one inverted file was trained on a bank's first references and appended to forever:
    1.8 s per check at 10,000 references.
    """

    images: RecordIds = field(repr=False)
    sizes: np.ndarray = field(repr=False)  # (K, 2) int32: width, height of each image
    descriptors: np.ndarray = field(repr=False)  # (M, 32) uint8
    points: np.ndarray = field(repr=False)  # (M, 2) float32
    owner: np.ndarray = field(repr=False)  # (M,) int32, non-decreasing
    pooled: np.ndarray = field(repr=False)  # (P,) int64, increasing: the rows searched

    POOLED = 300  # first corners of a reference in the pool (see `moderate.signals.keypoints`). Tuning
    # split, pasted 30-50%, strongest-first: 100 / 200 / 300 / 500 pooled found 33 / 34 / 37 / 41
    # of 42; level by level, 200 found 41. 300 because 200 lost a photo pasted at 15% of a collage
    # under the strict policy (tests/test_allowlist.py), which 300 finds; 500 lost it too (that
    # case sits at the edge) and would scan 1.7x more per query.
    IVF_FROM = 8192
    IVF_LIST = 300
    IVF_PROBE = 8  # lists probed per query descriptor of a self-trained inverted file
    WORDS_FROM = 1 << 20  # about 3,500 references
    WORD_PROBE = 16  # words probed per query descriptor
    # Chosen on the tuning split (tuning photos' edited crops among 1.1M pooled corners; share of
    # exhaustive search's nearest corners found): probe 8 / 16 / 24 / 32 -> 0.89 / 0.94 / 0.96 / 0.97.
    WORD_SEARCH = 32  # HNSW candidate list when finding a query descriptor's nearest words
    # Tuning split (edited tuning photos against a 10k-reference pool of 1.8M): ef 64 / 32 / 24 / 16
    # found 0.903 / 0.899 / 0.894 / 0.881 of exhaustive search's nearest corners; the word search
    # was two thirds of the index's time at 64, and 32 costs 28% less.
    ADD_WORD_SEARCH = 16  # and a reference descriptor's nearest word: 0.940 against 0.941 at 64, 3x faster
    WORD_SCAN = 2000  # pooled descriptors read per query descriptor, at most: its words in order, nearest
    # first, until this many (the nearest always), so a check's cost stops growing with the pool once
    # a word's list averages WORD_SCAN / WORD_PROBE (about 10,000 references). Tuning split (hard
    # edits of the robustness photos against the 100k scale bank, which holds ~1,200 crops of each):
    # unlimited / 8,000 / 4,000 / 2,000 / 1,000 / 500 blocked 185 / 185 / 186 / 187 / 186 / 187 of 210
    # and no distractor, in 567 / 214 / 159 / 131 / 122 / 119 ms per retrieval; at 10k, 190 / - / 190
    # / 189 / 190 in 125 / - / 122 / 109 / 96 ms. Votes need a few of a copy's many corners, and
    # those are in their nearest word; 2,000 keeps some depth for the corners that moved.

    @classmethod
    def empty(cls) -> "KeypointIndex":
        return cls.build([])

    @classmethod
    def build(cls, records: list) -> "KeypointIndex":
        """From (record id, KeypointSet) pairs."""
        empty = cls(RecordIds.build([]), np.zeros((0, 2), np.int32), np.zeros((0, 32), np.uint8),
                    np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64))
        return empty.appended(records) if records else empty

    def __len__(self) -> int:
        return len(self.images)

    @property
    def record_ids(self) -> RecordIds:
        return self.images

    def rows(self, image: int) -> slice:
        """The rows of one image."""
        starts = self.__dict__.get("_starts")
        if starts is None:  # once per index: a search of a memory-mapped 5M-row owner costs 1.3 ms
            starts = np.searchsorted(self.owner, np.arange(len(self) + 1))
            object.__setattr__(self, "_starts", starts)
        return slice(int(starts[image]), int(starts[image + 1]))

    def arrays(self) -> dict:
        """What the catalog saves: the arrays, and the trained inverted file once there is one
        (training and filling it from scratch takes 20-30 s at 1M descriptors, loading 50 ms)."""
        out = {"offsets": self.images.offsets, "ids": self.images.blob, "sizes": self.sizes,
               "descriptors": self.descriptors, "points": self.points, "owner": self.owner, "pooled": self.pooled}
        if len(self.pooled) >= self.IVF_FROM:
            out["ivf"] = lambda: _ivf_bytes(self)
        return out

    @classmethod
    def load(cls, files) -> "KeypointIndex":
        """From what `arrays` saved; the inverted file is read on first search. ValueError if
        inconsistent, OSError if a file is missing (one saved by an earlier version: rebuilt)."""
        index = cls(RecordIds(files.array("offsets"), files.blob("ids")), files.array("sizes"),
                    files.array("descriptors"), files.array("points"), files.array("owner"), files.array("pooled"))
        index.images.check()
        if len(index.images) != len(index.sizes) or len({len(index.descriptors), len(index.points),
                                                         len(index.owner)}) != 1:
            raise ValueError("keypoint index files do not agree")
        if len(index.pooled) and not 0 <= int(index.pooled[-1]) < len(index.descriptors):
            raise ValueError("keypoint pool outside the index")
        index.load_from(files.path("ivf"))
        return index

    def appended(self, records: list) -> "KeypointIndex":
        grown = self._appended(records)
        if len(self.pooled) >= self.IVF_FROM and _fits(self._faiss(), len(grown.pooled)):
            import faiss

            # Carry the inverted file (adding is cheap, training and filing are not) while it fits the
            # grown pool; else the writer builds the one that fits when it saves. A copy: readers of
            # this snapshot (a server's in-flight checks) keep searching the old one, whose rows must
            # never run past this snapshot's arrays.
            index = _tuned(faiss.clone_binary_index(self._in_memory()))
            added = np.ascontiguousarray(grown.descriptors[grown.pooled[len(self.pooled):]])
            if _of_words(index):
                _filed(index, added)
            else:
                index.add(added)
            object.__setattr__(grown, "_faiss_index", index)
        return grown

    def _appended(self, records: list) -> "KeypointIndex":
        first, rows = len(self), len(self.descriptors)
        counts = np.array([len(k) for _, k in records], np.int64)
        starts = rows + np.concatenate([[0], np.cumsum(counts)[:-1]])
        # Records written before queries carried the mirror hold a mirrored set, and their corners in
        # no useful order: every corner of theirs is pooled (no more than they pooled before).
        pooled = [count if len(k.mirrored_descriptors) else min(count, self.POOLED)
                  for (_, k), count in zip(records, counts)]
        pool = [np.arange(start, start + n) for start, n in zip(starts, pooled)]
        return KeypointIndex(
            self.images.appended([rid for rid, _ in records]),
            np.concatenate([self.sizes, np.array([[k.width, k.height] for _, k in records], np.int32).reshape(-1, 2)]),
            np.concatenate([self.descriptors] + [k.descriptors for _, k in records]),
            np.concatenate([self.points] + [k.points for _, k in records]),
            np.concatenate([self.owner, np.repeat(np.arange(first, first + len(records), dtype=np.int32), counts)]),
            np.concatenate([self.pooled, *pool]).astype(np.int64),
        )

    def without(self, drop: np.ndarray) -> "KeypointIndex":
        """A copy without the images where `drop` is true (and their corners)."""
        keep = ~np.asarray(drop, dtype=bool)
        renumber = np.cumsum(keep) - 1
        rows = keep[self.owner]
        renumber_rows = np.cumsum(rows) - 1
        pool = rows[self.pooled]
        kept = KeypointIndex(self.images.kept(keep), np.ascontiguousarray(self.sizes[keep]),
                             np.ascontiguousarray(self.descriptors[rows]), np.ascontiguousarray(self.points[rows]),
                             renumber[self.owner[rows]].astype(np.int32), renumber_rows[self.pooled[pool]])
        if len(kept.pooled) >= self.WORDS_FROM and not pool.all():
            # carry the words' inverted file: filing 10M descriptors anew takes minutes, this a second
            object.__setattr__(kept, "_faiss_index", _without_rows(self._in_memory(), pool))
        return kept

    def nearest(self, descriptors: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows), each (Q, k): the `k` nearest pooled descriptors of each query
        descriptor, nearest first; rows are -1 where the pool has fewer than `k`."""
        if len(self.pooled) == 0 or len(descriptors) == 0:
            return np.zeros((len(descriptors), k), np.int32), np.full((len(descriptors), k), -1, np.int64)
        index, data = self._faiss(), np.ascontiguousarray(descriptors, dtype=np.uint8)
        distances, positions = self._scanned(index, data, k) if _of_words(index) else index.search(data, k)
        return distances, np.where(positions >= 0, self.pooled[np.maximum(positions, 0)], -1)

    def _scanned(self, index, data: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The words' inverted file searched within `WORD_SCAN` entries per query descriptor."""
        sizes = self.__dict__.get("_list_sizes")
        if sizes is None:  # once per snapshot: 30 ms for 16,384 lists
            sizes = np.array([index.invlists.list_size(word) for word in range(index.nlist)], np.int64)
            object.__setattr__(self, "_list_sizes", sizes)
        word_distances, words = index.quantizer.search(data, index.nprobe)
        read = sizes[np.maximum(words, 0)]
        words = np.where(np.cumsum(read, axis=1) - read < self.WORD_SCAN, words, -1)  # faiss skips -1
        return index.search_preassigned(data, k, words, word_distances)

    def load_from(self, path: Path) -> None:
        """Use the inverted file saved at `path` if it covers exactly the pool (lazily).

        Writers save it with each snapshot and carry it through appends: training and filling it
        from scratch takes 20-30 s at 1M descriptors, loading it 50 ms."""
        object.__setattr__(self, "_ivf_file", path)

    def _faiss(self):
        cached = self.__dict__.get("_faiss_index")
        saved = self.__dict__.get("_ivf_file")
        if cached is None and saved is not None and len(self.pooled) >= self.IVF_FROM:
            import faiss

            faiss.omp_set_num_threads(1)
            try:  # memory-mapped: a check starts in milliseconds and shares the pages with other processes
                loaded = faiss.read_index_binary(str(saved), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:  # missing or damaged: rebuilt below
                loaded = None
            # one of another regime or outgrown (saved by an older version, say) is rebuilt below
            if loaded is not None and loaded.ntotal == len(self.pooled) and _fits(loaded, len(self.pooled)):
                cached = _tuned(loaded)
                object.__setattr__(self, "_faiss_index", cached)
        if cached is None:
            import faiss

            faiss.omp_set_num_threads(1)
            data = np.ascontiguousarray(self.descriptors[self.pooled])
            if len(data) < self.IVF_FROM:
                cached = faiss.IndexBinaryFlat(256)
                cached.add(data)
            elif len(data) < self.WORDS_FROM:
                lists = len(data) // self.IVF_LIST
                cached = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(256), 256, lists)
                cached.cp.niter = 10  # measured at 1M: 12 s to train on 16 per list, 4 s on 8, same recall
                cached.cp.min_points_per_centroid = 4  # 8 per list is enough here; faiss would warn below 39
                cached.train(data[np.random.default_rng(0).choice(len(data), lists * 8, replace=False)])
                cached.add(data)
                cached = _tuned(cached)
            else:
                cached = _tuned(faiss.IndexBinaryIVF(_word_graph(), 256, len(_words())))
                cached.is_trained = True  # the words are the training
                _filed(cached, data)
            object.__setattr__(self, "_faiss_index", cached)
        return cached

    def _in_memory(self):
        """The inverted file, read into memory if it was mapped: faiss can neither copy nor
        serialize mapped lists, and writers do both."""
        index = self._faiss()
        if _mapped(index):
            import faiss

            index = _tuned(faiss.read_index_binary(str(self.__dict__["_ivf_file"])))
            object.__setattr__(self, "_faiss_index", index)
        return index


def _mapped(index) -> bool:
    import faiss

    return hasattr(index, "invlists") and isinstance(faiss.downcast_InvertedLists(index.invlists),
                                                     faiss.OnDiskInvertedLists)


def _fits(index, size: int) -> bool:
    """Whether an inverted file is the one a pool of `size` descriptors should be searched with:
    the words' from `WORDS_FROM` on; below, one trained on the pool when it was at least half as big."""
    if size >= KeypointIndex.WORDS_FROM:
        return _of_words(index)
    return not _of_words(index) and size <= 2 * index.nlist * KeypointIndex.IVF_LIST


def _of_words(index) -> bool:
    """Whether an index is the inverted file of the vocabulary's words (else one trained on its pool, or exhaustive)."""
    return getattr(index, "nlist", 0) == len(_words())  # an exhaustive index has no lists


def _tuned(index):
    """The inverted file's search settings, which faiss does not save with it."""
    import faiss

    if _of_words(index):
        index.nprobe = KeypointIndex.WORD_PROBE
        faiss.downcast_IndexBinary(index.quantizer).hnsw.efSearch = KeypointIndex.WORD_SEARCH
    else:
        index.nprobe = KeypointIndex.IVF_PROBE
    return index


@functools.cache
def _words() -> np.ndarray:
    """(16384, 32) uint8: the shipped visual words (see `bench/vocabulary.py`)."""
    return np.load(Path(__file__).with_name("vocabulary.npy"))


@functools.cache
def _word_graph():
    """An HNSW graph over the words (0.9 s to build, so once per process): filing a reference's
    descriptor costs 11-24 us instead of 40 us against every word, whatever the bank's size.
    Cached and never freed: inverted files refer to it."""
    import faiss

    graph = faiss.IndexBinaryHNSW(256, 32)
    graph.hnsw.efConstruction = 80
    graph.add(_words())
    return graph


def _filed(index, descriptors: np.ndarray) -> None:
    """Add descriptors to an inverted file, each in the list of its nearest word as a shallower
    graph search finds it (`ADD_WORD_SEARCH`; the query side searches deeper and probes several)."""
    import faiss

    data = np.ascontiguousarray(descriptors, dtype=np.uint8)
    params = faiss.SearchParametersHNSW()
    params.efSearch = KeypointIndex.ADD_WORD_SEARCH
    # Writers file in every core's thread (OpenMP's thread count is the calling thread's own, so a
    # server's checks keep their one thread); checks search in one, as they run side by side.
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        for start in range(0, len(data), 1 << 20):  # bounded temporaries
            chunk = data[start:start + (1 << 20)]
            _, words = _word_graph().search(chunk, 1, params=params)
            index.add_core(len(chunk), faiss.swig_ptr(chunk), None, faiss.swig_ptr(np.ascontiguousarray(words.ravel())))
    finally:
        faiss.omp_set_num_threads(1)


def _without_rows(index, kept: np.ndarray):
    """A copy of an inverted file without the pool positions where `kept` (P,) is false, the
    others renumbered as the compacted pool numbers them."""
    import faiss

    copy = _tuned(faiss.clone_binary_index(index))
    bitmap = np.packbits(~kept, bitorder="little")
    copy.remove_ids(faiss.IDSelectorBitmap(len(kept), faiss.swig_ptr(bitmap)))
    renumber = np.cumsum(kept) - 1
    lists = copy.invlists
    for word in range(copy.nlist):
        size = lists.list_size(word)
        if size:
            ids = faiss.rev_swig_ptr(lists.get_ids(word), size)  # the list's own ids, rewritten in place
            ids[:] = renumber[ids]
    return copy


def _ivf_bytes(keypoints: KeypointIndex) -> bytes:
    import faiss

    return faiss.serialize_index_binary(keypoints._in_memory()).tobytes()
