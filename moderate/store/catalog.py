"""The indexes derived from Chroma (each signal's own, see `moderate.signals`), persisted in the data folder.

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
from typing import Callable, Iterator

import numpy as np

from ..errors import StoreError
from ..ids import RecordIds
from ..signals.keypoints import KeypointIndex
from ..signals.pdq import CODE_BYTES, PdqIndex
from . import Store



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
