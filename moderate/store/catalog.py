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
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import StoreError
from ..signals import KEYPOINTS, PDQ, SIGNALS
from ..signals.base import StoredSignal
from . import Store
from .packs import PackMap, records_of

PACKS = "packs"  # the pack map's files beside the signals' (no signal has this name)


@dataclass(frozen=True)
class Snapshot:
    """What the matcher needs, derived from the store at one generation: the banks' settings and
    each stored signal's index (`indexes[signal name]`, see `StoredSignal`)."""

    generation: str
    banks: dict  # name -> bank record (action, description, enabled, created_at)
    indexes: dict = field(default_factory=lambda: {s.name: s.index.build([]) for s in stored_signals()})
    stamp: list | None = None  # the store's stamp when saved (embedded only)
    packs: PackMap = field(default_factory=PackMap.empty)  # which hash-list packs hold which references

    @property
    def pdq(self):
        return self.indexes[PDQ.name]

    @property
    def keypoints(self):
        return self.indexes[KEYPOINTS.name]

    def with_index(self, signal: str, index) -> "Snapshot":
        return replace(self, indexes={**self.indexes, signal: index})


def stored_signals() -> list[StoredSignal]:
    """The registry's signals that keep records of their own and derive an index from them."""
    return [signal for signal in SIGNALS.values() if isinstance(signal, StoredSignal)]


@dataclass(frozen=True)
class SavedFiles:
    """One signal's files of one saved snapshot: arrays memory-mapped, blobs read, paths for lazy loads."""

    dir: Path
    stem: str  # TAG.SIGNAL

    def path(self, name: str) -> Path:
        return self.dir / f"{self.stem}-{name}"

    def array(self, name: str) -> np.ndarray:
        return np.load(self.dir / f"{self.stem}-{name}.npy", mmap_mode="r")

    def blob(self, name: str) -> bytes:
        return self.path(name).read_bytes()


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
                    self._restamp(saved)  # Chroma touches its files even on reads: the index files stay
            return self._snapshot
        with self._locked():
            self._snapshot = self._rebuild(generation)
            self._save(self._snapshot)
        return self._snapshot

    def _stamp_matches(self, snapshot: Snapshot) -> bool:
        return snapshot.stamp is not None and snapshot.stamp == self.store.stamp()

    def _rebuild(self, generation: str) -> Snapshot:
        banks = self.store.bank_records()
        packs = list(self.store.packs())
        listed = records_of(packs)
        indexes = {signal.name: signal.index.build([(rid, value) for rid, value, _ in self.store.records(signal)]
                                                   + listed.get(signal.name, []))
                   for signal in stored_signals()}
        return Snapshot(generation, banks, indexes, packs=PackMap.empty().appended(packs))

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
            indexes = {signal.name: signal.index.load(SavedFiles(self.dir, f"{meta['tag']}.{signal.name}"))
                       for signal in stored_signals()}
            packs = PackMap.load(SavedFiles(self.dir, f"{meta['tag']}.{PACKS}"))
        except (ValueError, KeyError, TypeError, OSError):
            return None
        return Snapshot(meta["generation"], meta["banks"], indexes, meta.get("stamp"), packs)

    def _restamp(self, snapshot: Snapshot) -> None:
        """Record the store's current stamp for a saved snapshot of the same generation, rewriting
        only `snapshot.json` (re-saving a 10k-reference index rebuilt and rewrote its inverted file)."""
        meta = json.loads((self.dir / "snapshot.json").read_text())
        if meta.get("generation") != snapshot.generation:
            return  # another writer moved on meanwhile; the next read sees its snapshot
        meta["stamp"] = self.store.stamp()
        pending = self.dir / f"snapshot.json.{os.getpid()}.tmp"
        pending.write_text(json.dumps(meta))
        os.replace(pending, self.dir / "snapshot.json")
        self._snapshot = replace(snapshot, stamp=meta["stamp"])

    def _save(self, snapshot: Snapshot) -> None:
        """Write each file under a temporary name and rename it, `snapshot.json` last."""
        tag = "s" + hashlib.sha256(snapshot.generation.encode()).hexdigest()[:16]
        pending = f".{os.getpid()}.tmp"
        for signal_name, index in [*snapshot.indexes.items(), (PACKS, snapshot.packs)]:
            files = SavedFiles(self.dir, f"{tag}.{signal_name}")
            for name, value in index.arrays().items():
                target = files.path(name)
                if isinstance(value, np.ndarray):
                    target = target.with_name(target.name + ".npy")
                with open(str(target) + pending, "wb") as fh:
                    if isinstance(value, np.ndarray):
                        np.save(fh, np.asarray(value))
                    else:  # bytes, or a function making them (a trained index, serialized only when saved)
                        fh.write(bytes(value() if callable(value) else value))
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
