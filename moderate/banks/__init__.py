"""Banks: named sets of flagged references, each with a purpose and a default action.

A bank holds *references*: signals computed from a flagged image (or imported from an industry
hash list) plus metadata (source URL, note, who added it and when, size, original file name).
Never the image. Every change goes to Chroma first and then to the derived index, under one lock,
so the next process (another CLI call, a worker, a server) sees it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, TextIO

import numpy as np

from . import hashlist
from ..errors import BankError, HashListError, MediaError
from ..store.catalog import Catalog
from ..media import Budgets, decode, is_folder, read_bytes
from ..policy import RegionRules
from ..regions import Region
from ..signals import DIGEST, KEYPOINTS, LIST_TYPES, PDQ, PdqHash
from ..signals.digest import digest_keys
from ..signals.base import ReferenceImage
from ..signals.pdq import LOOKUPS_PER_CODE, MIN_REFERENCE_QUALITY
from ..store.catalog import stored_signals
from ..ids import check_reference_id, prefix, record_id, split_record_id
from ..store import Store
from ..store.packs import Pack, packed, records_of, reference_of

ACTIONS = ("block", "review")
# `flagged`: matches are the bank's action. `originals`: signed originals; a match that is not the
# verified original itself is a modified copy. `allowlist`: known false positives; an input at least
# as close to one of them as to any flagged reference is allowed.
KINDS = ("flagged", "originals", "allowlist")  # allowlist: known false positives, from review rejections
_BANK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Bank:
    name: str
    action: str
    description: str
    enabled: bool
    created_at: str
    kind: str = "flagged"
    references: int = 0
    hashes: int = 0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "action": self.action, "description": self.description, "enabled": self.enabled,
            "created_at": self.created_at, "kind": self.kind, "references": self.references, "hashes": self.hashes,
        }


@dataclass(frozen=True)
class Reference:
    """One flagged item: its id within its bank, its PDQ hashes, and its metadata.

    A reference can hold several images of one item (`bank add BANK a.jpg b.jpg --id ITEM`): each
    image adds its hashes and its keypoints (local features, `moderate.signals.keypoints`).
    """

    bank: str
    id: str
    pdq: tuple[str, ...]
    metadata: dict = field(default_factory=dict)
    keypoints: tuple = field(default=(), repr=False)  # KeypointSet per image, when computed here
    embeddings: tuple = field(default=(), repr=False)  # a vector per image, for banks with an embedding model
    digests: tuple = field(default=(), repr=False)  # sha256 of each image's bytes (`bank reembed` finds them again)
    values: dict = field(default_factory=dict, repr=False)  # stored signal -> ((value, image sha256), ...)
    listed: tuple[tuple[str, str], ...] = ()  # (signal type as listed, hex) of file digests from hash lists
    # (hex, quality) of PDQ hashes under MIN_REFERENCE_QUALITY: never matched (too flat), kept so that
    # an export lists them with their quality and an import of it keeps them unmatched
    flat: tuple[tuple[str, int], ...] = ()

    def hashes(self) -> tuple[tuple[str, str], ...]:
        """(hash-list signal type, hex) of every hash the reference can be listed with: PDQ, then listed digests."""
        return tuple((PDQ.name, hx) for hx in self.pdq) + self.listed


@dataclass(frozen=True)
class Problem:
    """An input a bank operation could not use, and why."""

    source: str
    message: str


@dataclass(frozen=True)
class AddReport:
    added: tuple[Reference, ...]
    skipped: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()  # added, but some signal cannot be used for it (a flat picture's PDQ)


@dataclass(frozen=True)
class ReembedReport:
    reembedded: int  # reference images with a vector of the new model
    missing: tuple[str, ...]  # reference ids of images not found again (no embedding now)
    model: str  # the new model's key
    previous: str | None  # the previous model's key, if the bank had one


@dataclass(frozen=True)
class ImportReport:
    imported: int
    already_present: int
    skipped: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()  # imported, but never matched (a PDQ hash under the quality floor)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def image_files(paths: Iterable[str | os.PathLike], recursive: bool = False, hidden: bool = False,
                problems: list[MediaError] | None = None) -> list[tuple[Path, str]]:
    """Expand files and folders into (file, reference id) pairs.

    A file's id is its path relative to the folder given, without extension; for a file named
    directly, just its stem. Hidden files and folders are skipped in folders unless `hidden`.
    Nothing else in a folder is passed over unseen: what cannot be listed or is not a file (an
    unreadable sub-folder, a FIFO, a broken link) goes to `problems`, or fails the call without it.
    """
    out: list[tuple[Path, str]] = []
    for given in paths:
        path = Path(given)
        if not is_folder(path):  # never raises: a path that cannot be looked at is that input's error
            out.append((path, path.stem))
            continue
        for file, problem in sorted(_folder_entries(path, recursive, hidden), key=lambda e: e[0]):
            if problem is None:
                out.append((file, file.relative_to(path).with_suffix("").as_posix()))
            elif problems is None:
                raise BankError(str(problem))
            else:
                problems.append(problem)
    return out


def _folder_entries(root: Path, recursive: bool, hidden: bool) -> Iterator[tuple[Path, MediaError | None]]:
    """(file, None) for each file under `root`, (entry, why) for each entry that is neither a file
    nor a folder to walk. Path.rglob drops folders it cannot list without a word, hence this walk.
    Links to folders are reported, not followed: one to / would walk /proc and every mount."""
    seen: set[tuple[int, int]] = set()
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:  # a bind mount inside itself
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            yield folder, MediaError(str(folder), "unreadable", f"cannot list the folder: {exc.strerror or exc}")
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(".") and not hidden:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        folders.append(path)
                elif entry.is_dir():
                    if recursive:
                        yield path, MediaError(str(path), "not_a_file", "is a link to a folder: not followed (name its target)")
                elif entry.is_file():
                    yield path, None
                elif entry.is_symlink():
                    yield path, MediaError(str(path), "not_found", "is a broken symbolic link")
                else:
                    yield path, MediaError(str(path), "not_a_file", "is not a regular file (a FIFO, socket or device)")
            except OSError as exc:
                yield path, MediaError(str(path), "unreadable", f"cannot inspect it: {exc.strerror or exc}")


class Banks:
    """Bank operations over a store and its derived index (`engine.banks`)."""

    def __init__(self, store: Store, catalog: Catalog, budgets: Budgets = Budgets(), regions: RegionRules = RegionRules()):
        self.store = store
        self.catalog = catalog
        self.budgets = budgets
        self.regions = regions  # de-bordering and parts also hash references (see `moderate.regions`)

    # -- banks -------------------------------------------------------------------------------

    def create(self, name: str, action: str = "block", description: str = "", kind: str = "flagged",
               embedding: str | None = None, thumbnails: bool = False) -> Bank:
        """A new bank; with `embedding` (a model: `efficientnet-lite0` or a Hugging Face folder), its
        references also get embeddings of that model, for similar-content matching and search.

        Banks keep signals, never images. `thumbnails` is the one, explicit exception: each
        reference keeps a THUMBNAIL_SIZE px JPEG that moderators see beside a match. Never for
        content that is illegal to hold."""
        if not _BANK_NAME.fullmatch(name or ""):
            raise BankError(f"bank name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
        if action not in ACTIONS:
            raise BankError(f"bank {name}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if kind not in KINDS:
            raise BankError(f"bank {name}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        record = {"action": action, "description": description, "enabled": True, "created_at": now(), "kind": kind}
        if thumbnails:
            record["thumbnails"] = True
        if embedding:
            record.update(_model_record(embedding))
        with self.catalog.writing() as write:
            if name in write.snapshot.banks:
                raise BankError(f"bank {name} already exists")
            write.touch()
            self.store.put_bank(name, record)
            write.update(replace(write.snapshot, banks={**write.snapshot.banks, name: record}))
        return self.get(name)

    def list(self) -> list[Bank]:
        snapshot = self.catalog.current()
        return [self._bank(snapshot, name) for name in sorted(snapshot.banks)]

    def get(self, name: str) -> Bank:
        snapshot = self.catalog.current()
        self._record(snapshot, name)
        return self._bank(snapshot, name)

    @staticmethod
    def _bank(snapshot, name: str) -> Bank:
        """`references` counts those listed by a PDQ record and those from hash lists with digests
        only; `hashes` their PDQ hashes and those references' digests."""
        record = snapshot.banks[name]
        in_bank = snapshot.pdq.bank_mask(name)
        digests = snapshot.indexes[DIGEST.name]
        listed = digests.listing & digests.record_ids.prefix_mask(prefix(name))
        references = int((in_bank & snapshot.pdq.first_hash_mask()).sum()
                         + (listed & digests.record_ids.first_hash_mask()).sum())  # what `listing_mask` gives
        return Bank(
            name=name, action=record.get("action", "block"), description=record.get("description", ""),
            enabled=bool(record.get("enabled", True)), created_at=record.get("created_at", ""),
            kind=record.get("kind", "flagged"), references=references, hashes=int(in_bank.sum() + listed.sum()),
        )

    def enable(self, name: str) -> Bank:
        return self._set(name, enabled=True)

    def disable(self, name: str) -> Bank:
        return self._set(name, enabled=False)

    def _set(self, name: str, **changes) -> Bank:
        with self.catalog.writing() as write:
            record = {**self._record(write.snapshot, name), **changes}
            write.touch()
            self.store.put_bank(name, record)
            write.update(replace(write.snapshot, banks={**write.snapshot.banks, name: record}))
        return self.get(name)

    def rename(self, name: str, new_name: str) -> Bank:
        """Give a bank another name, in one write: its settings and every record (record ids start
        with the bank's name) move to the new name, and the old name is gone. Allow-list entries
        that named the old bank's references no longer suppress anything (fail closed)."""
        if not _BANK_NAME.fullmatch(new_name or ""):
            raise BankError(f"bank name {new_name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
        with self.catalog.writing() as write:
            record = self._record(write.snapshot, name)
            if new_name in write.snapshot.banks:
                raise BankError(f"bank {new_name} already exists")
            write.touch()
            self.store.put_bank(new_name, record)

            def moved(rid: str) -> str:  # BANK::REF::N -> NEW::REF::N
                return new_name + rid[len(name):]

            packs = list(self.store.packs(where={"bank": name}))
            packed_ids = {rid for pack in packs for rid in pack.record_ids()}  # rows, not Chroma records
            images: list[str] = []
            for signal in stored_signals():
                ids = [rid for rid in self._ids(write.snapshot, signal.name, prefix(name)) if rid not in packed_ids]
                images = ids if signal is KEYPOINTS else images
                for start in range(0, len(ids), signal.page):
                    self._add_records(write, signal, [(moved(rid), value, {**md, "bank": new_name})
                                                      for rid, value, md in self.store.records(signal, ids=ids[start:start + signal.page])])
            if record.get("embedding_key") and images:
                model = _model_of(record)
                self.store.add_embeddings(model, [(moved(rid), vector, {**md, "bank": new_name})
                                                  for rid, vector, md in self.store.embedding_records(model, images)])
            self._add_packs(write, [pack.renamed(new_name) for pack in packs], rewritten=True)  # the same packs, moved
            self._delete_prefix(write, name, None, record)
            self.store.delete_bank(name)
            banks = {k: v for k, v in write.snapshot.banks.items() if k != name}
            write.update(replace(write.snapshot, banks={**banks, new_name: record}))
        return self.get(new_name)

    @staticmethod
    def _ids(snapshot, signal: str, start: str) -> list[str]:
        """Record ids of one signal's index that start with `start`."""
        ids = snapshot.indexes[signal].record_ids
        return [ids.id_at(int(p)) for p in np.flatnonzero(ids.prefix_mask(start))]

    def delete(self, name: str) -> int:
        """Delete a bank and all its references; returns how many hashes went with it."""
        with self.catalog.writing() as write:
            self._record(write.snapshot, name)
            removed = self._delete_prefix(write, name, None, write.snapshot.banks[name])
            self.store.delete_bank(name)
            banks = {k: v for k, v in write.snapshot.banks.items() if k != name}
            write.update(replace(write.snapshot, banks=banks))
        return removed

    def _delete_prefix(self, write, bank: str, reference_ids: frozenset[str] | None, bank_record: dict) -> int:
        """Delete a bank's records, or these references' (by id, never by editable metadata), and
        their rows in hash-list packs; returns how many PDQ hashes went."""
        write.touch()
        if reference_ids is None:
            packs, kept = list(self.store.packs(where={"bank": bank})), []
        else:
            packs = [pack for pack in self.store.packs(ids=write.snapshot.packs.packs_of(bank, reference_ids))
                     if pack.bank == bank]  # a key shared by chance names another bank's pack
            kept = [rest for rest in (pack.without(reference_ids) for pack in packs) if rest.rows]
        self.store.delete_packs(sorted({pack.id for pack in packs} - {pack.id for pack in kept}))
        self.store.add_packs(kept)
        packed_ids = {rid for pack in packs for rid in pack.record_ids()
                      if reference_ids is None or split_record_id(rid)[1] in reference_ids}
        snapshot, removed = write.snapshot, 0
        snapshot = replace(snapshot, packs=snapshot.packs.without_packs([pack.id for pack in packs]).appended(kept))
        image_ids = []  # keypoint records are one per reference image, as embedding records are
        for signal in stored_signals():
            index = snapshot.indexes[signal.name]
            mask = _records_of(index.record_ids, bank, reference_ids)
            ids = [index.record_ids.id_at(int(p)) for p in np.flatnonzero(mask)]
            self.store.delete_records(signal, [rid for rid in ids if rid not in packed_ids])
            snapshot = snapshot.with_index(signal.name, index.without(mask))
            removed = len(ids) if signal is PDQ else removed
            image_ids = ids if signal is KEYPOINTS else image_ids
        if bank_record.get("embedding_key") and image_ids:
            self.store.delete_embeddings(_model_of(bank_record), image_ids)
        write.update(snapshot)
        return removed

    @staticmethod
    def _record(snapshot, name: str) -> dict:
        if name not in snapshot.banks:
            raise BankError(f"no bank named {name!r} (see `moderate bank list`)")
        return snapshot.banks[name]

    # -- references ------------------------------------------------------------------------------

    def add(
        self,
        bank: str,
        paths: Iterable[str | os.PathLike],
        *,
        recursive: bool = False,
        reference_id: str | None = None,
        metadata: dict | None = None,
        skip_invalid: bool = False,
        region: str | None = None,
        progress=None,
        workers: int = 1,
    ) -> AddReport:
        """Hash image files and add each as a reference; all or nothing unless `skip_invalid`.

        With `reference_id`, all the files are images of that one reference. With `region`
        (`x,y,w,h` in pixels or fractions), only that part of each image is the reference: a logo,
        a symbol, one panel. `progress(done, total)` is called after each reference is hashed.
        With `workers` > 1 and at least `MIN_BATCH_FOR_WORKERS` references, references are hashed
        in that many spawned processes (a script calling this needs the `if __name__ == "__main__"`
        guard spawning requires); they are written in the order given either way.
        """
        record = self._record(self.catalog.current(), bank)  # before hashing what could not be added
        files = image_files(paths, recursive)
        if not files:
            raise BankError(f"bank {bank}: no image files to add")
        if reference_id is None:
            _refuse_duplicate_ids(files)
            groups = {ref_id: [path] for path, ref_id in files}
        else:
            groups = {reference_id: [path for path, _ in files]}
        base = {"added_at": now(), "added_by": default_actor(), **(metadata or {})}
        jobs = [_Job(bank, record, tuple(group), ref_id, base, region, None, self.budgets, self.regions)
                for ref_id, group in groups.items()]
        references: list[Reference] = []
        problems: list[Problem] = []
        for done, result in enumerate(_described(jobs, workers), 1):
            (problems if isinstance(result, Problem) else references).append(result)
            if progress:
                progress(done, len(groups))
        if problems and not skip_invalid:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BankError(f"{problems[0].message}{more}; nothing added (--skip-invalid adds the rest)")
        self._write_references(bank, references)
        return AddReport(tuple(references), tuple(problems), tuple(_flat(ref) for ref in references if not ref.pdq))

    def add_bytes(self, bank: str, data: bytes, reference_id: str, metadata: dict | None = None) -> Reference:
        """Add one image given as bytes (a review decision, an API upload) as a reference."""
        record = self._record(self.catalog.current(), bank)
        base = {"added_at": now(), "added_by": default_actor(), **(metadata or {})}
        reference = _Job(bank, record, (data,), reference_id, base, None, reference_id, self.budgets, self.regions).run()
        self._write_references(bank, [reference])
        return reference

    def allowlist(self) -> str:
        """The allow-list bank's name, creating it on first use."""
        from ..sinks.queue import ALLOWLIST_BANK

        if ALLOWLIST_BANK not in self.catalog.current().banks:
            try:
                self.create(ALLOWLIST_BANK, "review", "known false positives (review rejections)", kind="allowlist")
            except BankError:
                if ALLOWLIST_BANK not in self.catalog.current().banks:  # not just a concurrent first rejection
                    raise
        return ALLOWLIST_BANK

    def _write_references(self, bank: str, references: list[Reference]) -> None:
        with self.catalog.writing() as write:
            self._record(write.snapshot, bank)
            taken = self._taken(write.snapshot, bank, [ref.id for ref in references])
            if taken:
                first = sorted(taken)[0]
                raise BankError(
                    f"bank {bank}: reference id {first!r} is already used"
                    f"{f' (and {len(taken) - 1} more)' if len(taken) > 1 else ''}; remove it first or pass --id"
                )
            for signal in stored_signals():  # PDQ records carry the reference's metadata: they list the references
                records = [
                    (record_id(bank, ref.id, n), value, {
                        **(ref.metadata if signal is PDQ else {"sha256": image}), "bank": bank, "reference_id": ref.id})
                    for ref in references for n, (value, image) in enumerate(ref.values.get(signal.name, ()))
                ]
                self._add_records(write, signal, records)
            vectors = [(record_id(bank, ref.id, n), [float(x) for x in vector], {"bank": bank, "reference_id": ref.id})
                       for ref in references for n, vector in enumerate(ref.embeddings)]
            if vectors:
                self.store.add_embeddings(_model_of(write.snapshot.banks[bank]), vectors)

    def _add_records(self, write, signal, records: list[tuple[str, object, dict]]) -> None:
        """Records of one signal into Chroma, then into the snapshot's index of that signal."""
        if not records:
            return
        write.touch()
        self.store.add_records(signal, records)
        index = write.snapshot.indexes[signal.name].appended([(rid, value) for rid, value, _ in records])
        write.update(write.snapshot.with_index(signal.name, index))

    def remove(self, bank: str, reference_id: str) -> int:
        """Remove one reference (all its hashes); returns how many hashes were removed."""
        with self.catalog.writing() as write:
            self._record(write.snapshot, bank)
            held = (write.snapshot.indexes[signal.name].record_ids.prefix_mask(prefix(bank, reference_id)).any()
                    for signal in (PDQ, DIGEST))
            if not any(held):
                raise BankError(f"bank {bank} has no reference {reference_id!r}")
            return self._delete_prefix(write, bank, frozenset([reference_id]), write.snapshot.banks[bank])

    def remove_all(self, bank: str, reference_ids: Iterable[str]) -> int:
        """Remove these references in one write (those the bank does not hold are passed over),
        as an exchange's update does: one pass over a 10M-hash index, not one per reference.
        Returns how many PDQ hashes were removed."""
        wanted = frozenset(reference_ids)
        if not wanted:
            return 0
        with self.catalog.writing() as write:
            self._record(write.snapshot, bank)
            return self._delete_prefix(write, bank, wanted, write.snapshot.banks[bank])

    def reembed(self, bank: str, model: str, paths: Iterable[str | os.PathLike], recursive: bool = True,
                skip_missing: bool = False, progress=None) -> ReembedReport:
        """Move a bank to another embedding model (or give it one).

        Banks keep no images, so the images come from `paths` again: each reference image is found
        by the sha256 of its bytes, recorded when it was added. All or nothing unless `skip_missing`
        (images not found then lose their embedding; PDQ and keypoints still match them).
        `progress(done, total)` is called after each image is embedded.
        """
        from ..signals.embedding import require

        require(model)  # before reading every image again
        snapshot = self.catalog.current()
        record = self._record(snapshot, bank)
        images = snapshot.keypoints.images
        ids = [images.id_at(int(p)) for p in np.flatnonzero(images.prefix_mask(f"{bank}::"))]
        wanted = {md["sha256"]: rid for rid, _, md in self.store.records(KEYPOINTS, ids=ids, values=False) if md.get("sha256")}
        found: dict[str, Path] = {}
        for path, _ in image_files(paths, recursive):
            try:
                digest = hashlib.sha256(read_bytes(path, self.budgets)).hexdigest()
            except MediaError as exc:
                raise BankError(f"{path}: cannot read: {exc.detail}") from None
            if digest in wanted:
                found[wanted[digest]] = path
        missing = [rid for rid in ids if rid not in found]
        if missing and not skip_missing:
            raise BankError(f"bank {bank}: {len(missing)} of {len(ids)} reference images are not in the folders given "
                            f"(first: {split_record_id(missing[0])[1]}); nothing changed (--skip-missing re-embeds the rest)")
        new = _model_record(model)
        referenced = self.lookup((bank, split_record_id(rid)[1]) for rid in found)
        regions = {r.id: r.metadata.get("region") for r in referenced.values()}
        vectors = []
        embedder = _embedder(new)
        for rid, path in found.items():
            frame = decode(path, self.budgets, PDQ.working_size).frames[0]
            region = regions.get(split_record_id(rid)[1])
            box = Region.parse(region, frame.width, frame.height) if region else Region.whole(frame)
            (vector,) = embedder.compute([box.crop(frame)])
            bank_name, reference_id = split_record_id(rid)
            vectors.append((rid, [float(x) for x in vector], {"bank": bank_name, "reference_id": reference_id}))
            if progress:
                progress(len(vectors), len(found))
        with self.catalog.writing() as write:
            current = self._record(write.snapshot, bank)
            write.touch()
            if current.get("embedding_key"):
                self.store.delete_embeddings(_model_of(current), ids)
            updated = {**current, **new}
            if vectors:
                self.store.add_embeddings(_model_of(updated), vectors)
            self.store.put_bank(bank, updated)
            write.update(replace(write.snapshot, banks={**write.snapshot.banks, bank: updated}))
        return ReembedReport(len(vectors), tuple(split_record_id(rid)[1] for rid in missing), new["embedding_key"],
                             record.get("embedding_key"))

    def reference_ids(self, bank: str) -> list[str]:
        """The ids of a bank's references, sorted, from the derived index (no Chroma read)."""
        snapshot = self.catalog.current()
        self._record(snapshot, bank)
        pdq, digests = snapshot.pdq, snapshot.indexes[DIGEST.name]
        listing = [(pdq.records, pdq.bank_mask(bank) & pdq.first_hash_mask()),
                   (digests.record_ids, digests.listing_mask(bank))]
        return sorted(split_record_id(ids.id_at(int(p)))[1] for ids, mask in listing for p in np.flatnonzero(mask))

    def references(self, bank: str) -> Iterator[Reference]:
        """Every reference of a bank, read from Chroma (the system of record): its own records and
        the rows of its hash-list packs."""
        self._record(self.catalog.current(), bank)
        grouped = {(r.bank, r.id): r for r in _grouped(self.store.pdq_records(where={"bank": bank}))}
        _merge_rows(grouped, self.store.packs(where={"bank": bank}))
        return iter(grouped.values())

    def signed_originals(self, digests: list[str]) -> list[Reference]:
        """Registered signed originals whose signed content digest is one of `digests`."""
        if not digests:
            return []
        return _grouped(self.store.pdq_records(where={"signed_digest": {"$in": list(digests)}}))

    def lookup(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Reference]:
        """References by (bank, reference id), for the few that matched a query: their metadata
        and hashes (a reference with records of its own: its first PDQ hash only)."""
        keys = set(keys)
        if not keys:
            return {}
        found = {(r.bank, r.id): r for r in _grouped(self.store.pdq_records(ids=[record_id(*key, 0) for key in keys]))}
        rest = keys - set(found)
        packs = self.catalog.current().packs
        pack_ids = sorted({pid for bank in {bank for bank, _ in rest}
                           for pid in packs.packs_of(bank, [ref for b, ref in rest if b == bank])})
        if pack_ids:
            _merge_rows(found, self.store.packs(ids=pack_ids), rest)
        return found

    def _taken(self, snapshot, bank: str, reference_ids: list[str]) -> set[str]:
        """Which of these reference ids the bank already uses: a reference has a first PDQ record,
        a first digest record (an image's), or rows in a hash-list pack."""
        wanted = [record_id(bank, ref_id, 0) for ref_id in reference_ids]
        own = {split_record_id(rid)[1] for signal in (PDQ, DIGEST) for rid in self.store.existing_ids(wanted, signal)}
        return own | snapshot.packs.held(bank, reference_ids)

    def _add_packs(self, write, packs: list[Pack], rewritten: bool = False) -> None:
        """Packs into Chroma (new ones, or with `rewritten` the same ids written again), then their
        rows into the snapshot's indexes."""
        if not packs:
            return
        write.touch()
        self.store.add_packs(packs)
        snapshot = write.snapshot
        for name, records in records_of(packs).items():
            snapshot = snapshot.with_index(name, snapshot.indexes[name].appended(records))
        mapped = snapshot.packs.without_packs([p.id for p in packs]) if rewritten else snapshot.packs
        write.update(replace(snapshot, packs=mapped.appended(packs)))

    # -- hash lists ------------------------------------------------------------------------------

    def import_hashes(self, bank: str, text: str, *, source: str = "<hash list>", fmt: str | None = None,
                      skip_invalid: bool = False, metadata: dict | None = None) -> ImportReport:
        """Import a hash list (csv or txt, detected); idempotent: a hash already in the bank is
        skipped. PDQ rows become PDQ hashes, digest rows (`md5`, `video_md5`, ...) exact digests.

        Read `IMPORT_ROWS` rows at a time, each chunk written as packs (`moderate.store.packs`) a
        Chroma page at a time: an import killed part way keeps its committed pages, and running
        it again adds the rest. A bad line (unless `skip_invalid`) stops the writing; the rest is
        still read for its problems, what this import wrote is deleted again, and HashListError
        names every bad line."""
        try:
            chunks = hashlist.chunks(text, fmt, IMPORT_ROWS)
        except ValueError as exc:
            raise BankError(f"{source}: {exc}") from None
        base = {"added_at": now(), "added_by": default_actor(), "imported_from": source,
                **{k: v for k, v in (metadata or {}).items() if v is not None}}
        listed = imported = 0
        bad, unmatched, written = [], [], []
        rewritten: dict[str, object] = {}  # packs of earlier imports this one changed, as they were
        with self.catalog.writing() as write:
            self._record(write.snapshot, bank)
            before, held = write.snapshot, _Held(write.snapshot, bank)
            for good, wrong in chunks:
                listed += len(good)
                unmatched += [(item.line, item.quality) for item in good
                              if item.signal == PDQ.name and item.quality < MIN_REFERENCE_QUALITY]
                if bad and not skip_invalid:  # nothing more is written: only the problems are wanted
                    bad += wrong
                    continue
                bad += wrong
                if bad and not skip_invalid:
                    continue
                rows, relisted = self._new_rows(write.snapshot, bank, good, held)
                packs = packed(bank, base, rows)
                self._add_packs(write, packs)
                for pack in self._listed_by_pdq(write, bank, relisted):
                    rewritten.setdefault(pack.id, pack)
                held.add(rows)
                written += [pack.id for pack in packs]
                imported += len(rows)
            if bad and not skip_invalid:
                self.store.delete_packs(written)
                taken_back = set(written)
                self.store.add_packs([pack for pack_id, pack in rewritten.items() if pack_id not in taken_back])
                write.update(before)
                raise HashListError(source, sorted(bad))
        if not listed and not bad:
            raise BankError(f"{source}: no hashes found")
        skipped = tuple(Problem(f"{source}:{line}", message) for line, message in sorted(bad))
        warnings = tuple(Problem(f"{source}:{line}", f"PDQ quality {quality} is below {MIN_REFERENCE_QUALITY}: "
                                 "listed, but never matched (too flat)") for line, quality in unmatched)
        return ImportReport(imported, listed - imported, skipped, warnings)

    def _new_rows(self, snapshot, bank: str, listed: list[hashlist.ListedHash],
                  held: "_Held") -> tuple[list, set[str]]:
        """Pack rows (`moderate.store.packs.ROW`) for the listed hashes not yet in the bank, and
        the references that held digests only and now get a PDQ hash. Rows sharing a reference id
        become that reference's records 0, 1, ... of each signal; a new hash for a reference
        already in the bank is numbered after its others. A reference with a PDQ hash is listed by
        its PDQ records (as image references are); one with digests only, by its digests."""
        present = held.present(listed)
        holders = _holders(snapshot, bank, [item for item in listed if item.reference_id and _key(item) in present])
        # An unnamed usable PDQ row whose hash the bank holds only as a flat copy is new, but its
        # reference (named by the hash) exists: it is numbered after that reference's records.
        usable_new = [item._replace(quality=0) for item in listed if not item.reference_id and item.signal == PDQ.name
                      and item.quality >= MIN_REFERENCE_QUALITY and _key(item) not in present] if held.holds_flat() else []
        flat_named = {value for _, value, _ in held.present(usable_new)} if usable_new else set()
        named = sorted({item.reference_id for item in listed if item.reference_id} | flat_named)
        taken = self._taken(snapshot, bank, named) if named else set()
        items_of: dict[str, list] = {}
        seen: set[tuple] = set()
        for item in listed:
            # A row without a reference id is the hash itself: a duplicate wherever the bank holds
            # it. A named row is one only where its own reference holds it (two entries may list
            # one file).
            ref_id = item.reference_id or item.value
            held_here = _key(item) in present and (not item.reference_id or (item.kind, item.value, ref_id) in holders)
            if held_here or (*_key(item), ref_id) in seen:
                continue
            seen |= {(*_key(item), ref_id), (item.kind, item.value, False, ref_id)}  # a flat copy adds nothing
            items_of.setdefault(ref_id, []).append(item)
        rows, relisted, new = [], set(), {PDQ.name: 0, DIGEST.name: 0}
        for ref_id, items in items_of.items():
            if len(items) == 1 and ref_id not in taken:  # most rows: a new reference of one hash
                rows.append(_row(items[0], ref_id, 0, True))
                continue
            numbered = new if ref_id not in taken else {
                s.name: int(snapshot.indexes[s.name].record_ids.prefix_mask(prefix(bank, ref_id)).sum()) for s in (PDQ, DIGEST)}
            hashes = [item for item in items if item.signal == PDQ.name]
            if hashes and numbered[DIGEST.name] and not numbered[PDQ.name]:
                relisted.add(ref_id)  # listed by its digests so far (an earlier chunk or import)
            lists = not (hashes or numbered[PDQ.name])  # its digests list it
            digest_items = [item for item in items if item.signal == DIGEST.name]
            for signal, chosen in ((PDQ, hashes), (DIGEST, digest_items)):
                rows += [_row(item, ref_id, n, lists) for n, item in enumerate(chosen, numbered[signal.name])]
        return rows, relisted

    def _listed_by_pdq(self, write, bank: str, reference_ids: set[str]) -> list:
        """References that held digests only and were just given a PDQ hash: their digests stop
        listing them (their first PDQ record does now), in their packs and in the digest index.
        Returns the packs as they were before (what an import taken back writes again)."""
        if not reference_ids:
            return []
        snapshot = write.snapshot
        packs = [pack for pack in self.store.packs(ids=snapshot.packs.packs_of(bank, reference_ids))
                 if pack.bank == bank]
        self.store.add_packs([pack.unlisting(reference_ids) for pack in packs])
        digests = snapshot.indexes[DIGEST.name]
        held = np.zeros(len(digests), bool)
        for ref_id in reference_ids:
            held |= digests.record_ids.prefix_mask(prefix(bank, ref_id))
        write.update(snapshot.with_index(DIGEST.name, replace(digests, listing=digests.listing & ~held)))
        return packs

    def export(self, bank: str, out: TextIO, fmt: str = "csv") -> int:
        """Write a bank as a hash list python-threatexchange reads: a row per PDQ hash and per
        digest a hash list gave (under the signal type it was listed as); a PDQ hash too flat to
        match carries its quality, so that importing the list back keeps it unmatched."""
        rows = (
            {"signal_type": list_type, "signal_str": hx, "bank": bank, "reference_id": ref.id, **ref.metadata,
             **extra}
            for ref in self.references(bank)
            for list_type, hx, extra in [*((t, hx, {}) for t, hx in ref.hashes()),
                                         *((PDQ.name, hx, {"quality": q}) for hx, q in ref.flat)]
        )
        try:
            return hashlist.write(rows, out, fmt)
        except ValueError as exc:
            raise BankError(str(exc)) from None


IMPORT_ROWS = 250_000  # hash-list rows parsed and written at a time (one Chroma call): ~200 MB
MIN_BATCH_FOR_WORKERS = 16  # spawning a hashing process costs about a second; a reference ~60 ms


@dataclass(frozen=True)
class _Job:
    """One reference to describe: everything it needs, so that a worker process can (no store)."""

    bank: str
    record: dict  # the bank's settings: thumbnails, embedding model
    images: tuple  # paths, or bytes
    ref_id: str
    base: dict
    region: str | None
    name: str | None
    budgets: Budgets
    regions: RegionRules

    def run(self) -> "Reference":
        """Every stored signal's values of every frame of the images (see `StoredSignal`)."""
        _check_reference_id(self.ref_id)
        values: dict[str, list] = {signal.name: [] for signal in stored_signals()}
        crops, digests, first = [], [], None
        for image in self.images:
            media = decode(image, self.budgets, PDQ.working_size, self.name)
            label = self.name or str(image)
            for frame in media.frames:
                try:
                    box = Region.parse(self.region, frame.width, frame.height) if self.region else Region.whole(frame)
                except ValueError as exc:
                    raise BankError(f"{label}: {exc}") from None
                seen = ReferenceImage(media, frame, box, self.regions)
                for signal in stored_signals():
                    values[signal.name] += [(value, media.sha256) for value in signal.reference_values(seen)]
                if frame.index == 0:
                    crops.append(box.crop(frame))
                    digests.append(media.sha256)
            first = first or (media, label, box)
        values[PDQ.name] = list({value.hex: (value, sha) for value, sha in values[PDQ.name]}.values())  # parts may repeat
        media, label, box = first
        metadata = {
            **self.base, "width": box.w, "height": box.h, "filename": label, "format": media.format,
            "sha256": media.sha256, "images": len(self.images),
        }
        if self.region:
            metadata["region"] = f"{box.x},{box.y},{box.w},{box.h}"
        if self.record.get("thumbnails"):
            metadata["thumbnail"] = _thumbnail(crops[0])
        vectors = tuple(_embedder(self.record).compute(crops)) if self.record.get("embedding_key") else ()
        return Reference(self.bank, self.ref_id,
                         tuple(v.hex for v, _ in values[PDQ.name] if v.quality >= MIN_REFERENCE_QUALITY), metadata,
                         tuple(v for v, _ in values[KEYPOINTS.name]), vectors, tuple(digests),
                         {signal: tuple(found) for signal, found in values.items()})

    def outcome(self) -> "Reference | Problem":
        try:
            return self.run()
        except (MediaError, BankError) as exc:
            return Problem(str(self.images[0]), str(exc))


def _described(jobs: list[_Job], workers: int) -> Iterator["Reference | Problem"]:
    """Each job's reference or problem, in order; in `workers` spawned processes for big batches
    (never forked: the parent may hold Chroma's threads)."""
    if workers <= 1 or len(jobs) < MIN_BATCH_FOR_WORKERS:
        yield from (job.outcome() for job in jobs)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    try:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            yield from pool.map(_Job.outcome, jobs, chunksize=4)
    except BrokenProcessPool:  # a worker killed (out of memory, a signal): nothing is written yet
        raise BankError(f"bank {jobs[0].bank}: a process hashing references died; nothing added "
                        "(--workers 1 hashes in this process)") from None


def _model_record(spec: str) -> dict:
    """What a bank records about its embedding model: how to load it and what it must be."""
    from ..signals.embedding import load_model

    try:
        identity = load_model(spec).identity
    except (ValueError, OSError) as exc:
        raise BankError(str(exc)) from None
    return {"embedding_model": os.path.abspath(spec) if os.path.isdir(spec) else spec,  # how to load it
            "embedding_key": identity.key, "embedding_name": identity.name, "embedding_version": identity.version,
            "embedding_dimension": identity.dimension, "embedding_preprocessing": identity.preprocessing}


def _model_of(bank_record: dict) -> dict:
    """The store's description of a bank's embedding collection."""
    return {"key": bank_record["embedding_key"], "model": bank_record["embedding_model"],
            "dimension": bank_record["embedding_dimension"]}


def _embedder(bank_record: dict):
    """The bank's embedding model, refusing one whose weights changed since the bank was made."""
    from ..signals.embedding import load_model

    model = load_model(bank_record["embedding_model"])
    if model.identity.key != bank_record["embedding_key"]:
        raise BankError(f"embedding model {bank_record['embedding_model']} is now {model.identity.key}, but the bank "
                        f"holds {bank_record['embedding_key']} vectors: run `moderate bank reembed`")
    return model


def _key(item: hashlist.ListedHash) -> tuple[str, str, bool]:
    """(kind, value, usable): what deduplication compares (a flat PDQ copy never stands for a usable one)."""
    return item.kind, item.value, item.signal != PDQ.name or item.quality >= MIN_REFERENCE_QUALITY


def _holders(snapshot, bank: str, items: list[hashlist.ListedHash]) -> set[tuple[str, str, str]]:
    """(kind, value, reference id) of these named rows whose own reference already holds them."""
    out = set()
    pdq, digests = snapshot.pdq, snapshot.indexes[DIGEST.name]
    for signal, index in ((PDQ.name, pdq), (DIGEST.name, digests)):
        chosen = [item for item in items if item.signal == signal]
        if not chosen:
            continue
        if signal == PDQ.name:
            found = index.positions_of(np.frombuffer(b"".join(bytes.fromhex(i.value) for i in chosen), np.uint8))
        else:
            found = index.positions([(item.kind, item.value) for item in chosen])
        for item, positions in zip(chosen, found):
            if any(split_record_id(index.record_ids.id_at(p)) == (bank, item.reference_id) for p in positions):
                out.add((item.kind, item.value, item.reference_id))
    return out


FEW_REFERENCES = 16  # removals masked one reference prefix at a time; more: each row's id read once


def _records_of(ids, bank: str, reference_ids: frozenset[str] | None) -> np.ndarray:
    """Mask of the rows of a bank (all, or these references') among record ids (a `RecordIds`)."""
    if reference_ids is None:
        return ids.prefix_mask(prefix(bank))
    if len(reference_ids) <= FEW_REFERENCES:
        mask = np.zeros(len(ids), bool)
        for ref_id in reference_ids:
            mask |= ids.prefix_mask(prefix(bank, ref_id))
        return mask
    mask = ids.prefix_mask(prefix(bank))
    for position in np.flatnonzero(mask):
        mask[position] = split_record_id(ids.id_at(int(position)))[1] in reference_ids
    return mask


def _row(item: hashlist.ListedHash, ref_id: str, n: int, lists: bool) -> tuple:
    """A listed hash as a pack row (`moderate.store.packs.ROW`): record N of its reference."""
    flag = item.quality if item.signal == PDQ.name else int(lists)
    return item.list_type, item.value, None if ref_id == item.value else ref_id, n, flag, item.metadata or None


class _Held:
    """The exact hashes of one bank, kept current through an import, for finding each chunk's
    duplicates. Kept apart: PDQ codes that match, every PDQ code, digest keys. A usable PDQ hash is
    a duplicate only of a usable one: a flat copy listed first must not hide it.

    A chunk of a few rows in a big bank (an exchange's new entries, a hand-made list) is looked up
    row by row: PDQ codes in the substring tables at radius 0, digests in the digest index. Past
    that, the bank's hashes are sorted once (10M codes take seconds to sort, a lookup ~0.1 ms) and
    each chunk is found by binary search: importing 8 hashes into a 10M-hash bank spent 7.7 of its
    17 s sorting."""

    USABLE = "usable"
    LOOKUPS_PER_CODE = LOOKUPS_PER_CODE  # rows a chunk may have per bank code and still be looked up row by row

    def __init__(self, snapshot, bank: str):
        self.snapshot, self.bank = snapshot, bank
        self.sorted: dict[str, np.ndarray] | None = None  # sorted keys per kind kept, once needed
        self.added: set[tuple[str, str, str]] = set()  # (kept, kind, value) added while there are none

    def present(self, listed: list[hashlist.ListedHash]) -> set[tuple[str, str, bool]]:
        """(kind, value, usable) of the listed hashes the bank holds (a usable PDQ hash: usable
        there; `usable` is true for digests)."""
        pdq = self.snapshot.pdq
        out = set()
        if self.sorted is None and pdq.tables is not None and len(listed) <= len(pdq) * self.LOOKUPS_PER_CODE:
            for item in listed:
                kept = self._kept_in(item.signal, item.quality)
                if (kept, item.kind, item.value) in self.added or self._looked_up(kept, item):
                    out.add((item.kind, item.value, kept != PDQ.name))
            return out
        for kept, held in self._sorted().items():
            items = [item for item in listed if self._kept_in(item.signal, item.quality) == kept]
            keys = _keys_of(kept, [(item.kind, item.value) for item in items])
            at = np.minimum(np.searchsorted(held, keys), max(len(held) - 1, 0))
            hits = held[at] == keys if len(held) else np.zeros(len(keys), bool)
            out |= {(item.kind, item.value, kept != PDQ.name) for item, hit in zip(items, hits) if hit}
        return out

    def add(self, rows: list[tuple]) -> None:
        kept_values = [(kept, LIST_TYPES[row[0]].list_types[row[0]], row[1]) for row in rows for kept in self._kinds_of(row)]
        if self.sorted is None:
            self.added |= set(kept_values)
            return
        for kept, held in self.sorted.items():
            new = np.sort(_keys_of(kept, [(kind, value) for k, kind, value in kept_values if k == kept]))
            self.sorted[kept] = np.insert(held, np.searchsorted(held, new), new)

    def holds_flat(self) -> bool:
        """Whether the bank may hold PDQ hashes too flat to match (known once sorted; a bank of
        usable hashes only, the usual case, then skips looking for them)."""
        return self.sorted is None or len(self.sorted[PDQ.name]) > len(self.sorted[self.USABLE])

    def _sorted(self) -> dict[str, np.ndarray]:
        if self.sorted is None:
            pdq, digests = self.snapshot.pdq, self.snapshot.indexes[DIGEST.name]
            in_bank = pdq.bank_mask(self.bank)
            codes = np.asarray(pdq.codes)
            self.sorted = {PDQ.name: np.sort(_as_keys(codes[in_bank])),
                           self.USABLE: np.sort(_as_keys(codes[in_bank & pdq._matchable()])),
                           DIGEST.name: np.sort(_as_keys(np.asarray(digests.keys)[
                               digests.record_ids.prefix_mask(prefix(self.bank))]))}
            for kept in self.sorted:
                values = [(kind, value) for k, kind, value in self.added if k == kept]
                if values:
                    self.sorted[kept] = np.sort(np.concatenate([self.sorted[kept], _keys_of(kept, values)]))
        return self.sorted

    def _looked_up(self, kept: str, item: hashlist.ListedHash) -> bool:
        """Whether the bank held `item` (as `kept`) before this import."""
        pdq = self.snapshot.pdq
        if kept == DIGEST.name:
            index = self.snapshot.indexes[DIGEST.name]
            [positions] = index.positions([(item.kind, item.value)])
        else:
            index = pdq
            [positions] = pdq.positions_of(np.frombuffer(bytes.fromhex(item.value), np.uint8))
        return any(index.record_ids.id_at(p).startswith(prefix(self.bank))
                   and (kept != self.USABLE or pdq.matchable is None or bool(pdq.matchable[p])) for p in positions)

    def _kinds_of(self, row: tuple) -> list[str]:
        """The kinds kept a written pack row counts in: a PDQ row among every code, and among usable
        ones when usable; a digest row among digests."""
        name = LIST_TYPES[row[0]].name
        return [name, self.USABLE] if name == PDQ.name and row[4] >= MIN_REFERENCE_QUALITY else [name]

    def _kept_in(self, signal: str, quality: int) -> str:
        return self.USABLE if signal == PDQ.name and quality >= MIN_REFERENCE_QUALITY else signal


def _keys_of(signal: str, values: list[tuple[str, str]]) -> np.ndarray:
    """Exact keys of (kind, hex) values: PDQ codes, or the digest index's keys."""
    if signal != DIGEST.name:
        raw = np.frombuffer(b"".join(bytes.fromhex(hx) for _, hx in values), np.uint8).reshape(-1, 32)
    else:
        raw = digest_keys(values)
    return _as_keys(raw)


def _as_keys(rows: np.ndarray) -> np.ndarray:
    """(N, W) uint8 rows as N comparable, sortable W-byte scalars."""
    return np.ascontiguousarray(rows).view(f"V{rows.shape[1]}").ravel()


def _merge_rows(grouped: dict[tuple[str, str], Reference], packs: Iterable[Pack],
                only: set[tuple[str, str]] | None = None) -> None:
    """Add the rows of hash-list packs to the references they belong to (all, or `only` these),
    creating those that have no record of their own. PDQ rows go first: a reference's first PDQ
    row carries its metadata, as its first PDQ record does."""
    rows = [(pack, row) for pack in packs for row in pack.rows]
    rows.sort(key=lambda pair: pair[1][0] != PDQ.name)
    for pack, row in rows:
        key = (pack.bank, reference_of(row))
        if only is not None and key not in only:
            continue
        ref = grouped.get(key) or Reference(pack.bank, key[1], (), pack.reference_metadata(row))
        if row[0] == PDQ.name:
            ref = _with_pdq(ref, row[1], row[4])
        else:
            ref = replace(ref, listed=ref.listed + ((row[0], row[1]),))
        grouped[key] = ref


def _grouped(records: Iterable[tuple[str, PdqHash, dict]]) -> list[Reference]:
    """PDQ records (one per hash, carrying the reference's metadata) grouped into references; `pdq`
    lists the hashes that match (a flat reference lists none)."""
    grouped: dict[tuple[str, str], Reference] = {}
    for _, value, md in records:
        key = (md.pop("bank"), md.pop("reference_id"))
        md.pop("quality", None)  # of one hash, not of the reference
        grouped[key] = _with_pdq(grouped.get(key) or Reference(key[0], key[1], (), md), value.hex, value.quality)
    return list(grouped.values())


def _with_pdq(ref: Reference, hx: str, quality: int) -> Reference:
    """`ref` with one more PDQ hash: matched, or kept as flat under the quality floor."""
    if quality >= MIN_REFERENCE_QUALITY:
        return replace(ref, pdq=ref.pdq + (hx,))
    return replace(ref, flat=ref.flat + ((hx, quality),))


THUMBNAIL_SIZE = 160  # px, longest side: enough to recognize a picture, too small to reuse it


def _thumbnail(pixels: np.ndarray) -> str:
    """A small JPEG of a reference as a data URI, for banks that allow thumbnails."""
    import base64
    import io

    from PIL import Image

    picture = Image.fromarray(pixels)
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def _flat(reference: Reference) -> Problem:
    return Problem(reference.metadata.get("filename", reference.id),
                   f"PDQ quality below {MIN_REFERENCE_QUALITY}: too flat for PDQ; added with its exact digests"
                   f"{' and keypoints' if any(len(k) for k in reference.keypoints) else ''}"
                   f"{' and embedding' if reference.embeddings else ''}")


def _check_reference_id(ref_id: str) -> None:
    try:
        check_reference_id(ref_id)
    except ValueError as exc:
        raise BankError(str(exc)) from None


def _refuse_duplicate_ids(files: list[tuple[Path, str]]) -> None:
    seen: dict[str, Path] = {}
    for path, ref_id in files:
        if ref_id in seen:
            raise BankError(f"{path} and {seen[ref_id]} would both get reference id {ref_id!r}; add them separately with --id")
        seen[ref_id] = path
