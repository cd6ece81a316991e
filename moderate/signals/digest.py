"""Exact digests: a byte-identical (or pixel-identical) re-upload of a reference is always found.

Perceptual signals can miss what they cannot describe: a flat picture has no usable PDQ hash and
no corners. An exact digest has no such limit and costs one hash-table probe, so it is looked up
first. Three digests of each reference image:
- `sha256` of the file's bytes;
- `md5` of the file's bytes, as in python-threatexchange's `photo_md5` and HMA's MD5 signal (what
  industry lists carry next to PDQ);
- `pixels`: SHA-256 of the decoded pixels at the working size, with their shape, so the same
  picture re-saved without its metadata (or in another lossless container) is found too. It
  depends on the decoder, which references and queries share.

Hash lists carry file digests too (`md5` rows beside `pdq` ones, see `list_types`): such a row
becomes a record of this index (kept in a hash-list pack, `moderate.store.packs`), so a listed MD5
and a reference image's MD5 are found by the same lookup. A reference from a hash list that has no
PDQ hash is listed by its digests (`DigestIndex.listing`).

Evidence has distance 0 and the digest's kind as its variant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..evidence import Evidence
from ..ids import RecordIds, prefix, split_record_id
from ..regions import Region
from ..rules import Band, Fields, SignalRules
from .base import Context, Query, ReferenceImage, StoredSignal
from .pytx import WIDTHS, validate

if TYPE_CHECKING:
    from ..media import Media

KEY_BYTES = 16  # of SHA-256(kind:digest): collisions at 2^-64 for 10^10 records
KINDS = ("sha256", "md5", "pixels")
# Digests of the file a caller can compute without us, by their hex length; `pixels` depends on our
# decoder, so it is never taken from outside.
FILE_DIGESTS = {kind: WIDTHS[kind] for kind in ("sha256", "md5")}
# Hash-list signal types that are file digests -> our kind: python-threatexchange's (`video_md5`,
# `video_sha256`: a file's digest whatever it holds), ThreatExchange's older `photo_md5`, and ours.
LIST_TYPES = {"md5": "md5", "photo_md5": "md5", "video_md5": "md5",
              "sha256": "sha256", "photo_sha256": "sha256", "video_sha256": "sha256"}


@dataclass(frozen=True)
class DigestRules(SignalRules):
    """The `digest:` section: an exact copy of a reference takes the bank's action by default."""

    bands: tuple[Band, ...] = (Band(0, "bank", "digest.exact"),)

    @classmethod
    def read_bound(cls, fields: Fields) -> int:
        return fields.integer(cls.bound_field, None, 0, 0)


@dataclass(frozen=True, eq=False)
class DigestIndex:
    """Exact lookup of digest keys: position i is record `record_ids.id_at(i)`."""

    keys: np.ndarray = field(repr=False)  # (N, KEY_BYTES) uint8
    record_ids: RecordIds = field(repr=False)
    listing: np.ndarray = field(repr=False)  # (N,) bool: the record lists its reference (a hash list's, without PDQ)

    @classmethod
    def build(cls, records: list[tuple[str, tuple]]) -> "DigestIndex":
        """From (record id, value) pairs; a value is (kind, hex digest), or (kind, hex digest, True)
        for a record that lists its reference."""
        return cls(digest_keys([value for _, value in records]), RecordIds.build([rid for rid, _ in records]),
                   np.array([len(value) > 2 and bool(value[2]) for _, value in records], bool))

    def __len__(self) -> int:
        return len(self.keys)

    def appended(self, records: list[tuple[str, tuple]]) -> "DigestIndex":
        grown = DigestIndex.build(records)
        return DigestIndex(np.concatenate([self.keys, grown.keys]), self.record_ids.appended([rid for rid, _ in records]),
                           np.concatenate([self.listing, grown.listing]))

    def without(self, drop: np.ndarray) -> "DigestIndex":
        keep = ~np.asarray(drop, dtype=bool)
        return DigestIndex(np.ascontiguousarray(self.keys[keep]), self.record_ids.kept(keep), self.listing[keep])

    def listing_mask(self, bank: str) -> np.ndarray:
        """Positions of the bank's records that list a reference (one per reference: its first)."""
        return self.listing & self.record_ids.prefix_mask(prefix(bank)) & self.record_ids.first_hash_mask()

    def positions(self, values: list[tuple[str, str]]) -> list[list[int]]:
        """For each (kind, digest), the positions holding it."""
        if not len(self) or not values:
            return [[] for _ in values]
        ordered_keys = self.keys.view(f"V{KEY_BYTES}").ravel()
        order = self.__dict__.get("_order")
        if order is None:
            order = np.argsort(ordered_keys, kind="stable")
            object.__setattr__(self, "_order", order)
        sorted_keys = ordered_keys[order]
        wanted = digest_keys(values).view(f"V{KEY_BYTES}").ravel()
        low, high = np.searchsorted(sorted_keys, wanted, "left"), np.searchsorted(sorted_keys, wanted, "right")
        return [order[a:b].tolist() for a, b in zip(low, high)]

    def arrays(self) -> dict:
        return {"keys": self.keys, "offsets": self.record_ids.offsets, "ids": self.record_ids.blob,
                "listing": self.listing}

    @classmethod
    def load(cls, files) -> "DigestIndex":
        index = cls(files.array("keys"), RecordIds(files.array("offsets"), files.blob("ids")), files.array("listing"))
        index.record_ids.check()
        if (index.keys.ndim != 2 or index.keys.shape[1] != KEY_BYTES or len(index.keys) != len(index.record_ids)
                or len(index.listing) != len(index.keys)):
            raise ValueError("digest index files do not agree")
        return index


def digest_keys(values: list[tuple]) -> np.ndarray:
    """(N, KEY_BYTES) index keys of (kind, hex digest, ...) values."""
    raw = b"".join(hashlib.sha256(f"{value[0]}:{value[1]}".encode()).digest()[:KEY_BYTES] for value in values)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, KEY_BYTES)


def pixel_digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(repr(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes()).hexdigest()


class DigestSignal(StoredSignal):
    """SHA-256 and MD5 of the file, SHA-256 of the decoded pixels; exact lookups only."""

    name = "digest"
    measure = "distance"
    rules: ClassVar[type[DigestRules]] = DigestRules
    collection = "moderate-digests"
    index = DigestIndex
    include = ()  # the digest is the record's metadata, always read
    list_types = LIST_TYPES

    def parse(self, text: str, list_type: str | None = "md5") -> str:
        """A file digest from a hash list row of `list_type` (a key of `LIST_TYPES`) in canonical
        lowercase hex; ValueError naming the problem."""
        return self.parse_digest(LIST_TYPES[list_type], text)

    def listed_value(self, text: str, list_type: str, flag: int) -> tuple:
        return (LIST_TYPES[list_type], text, True) if flag else (LIST_TYPES[list_type], text)

    def parse_digest(self, kind: str, text: str) -> str:
        """A file digest (`FILE_DIGESTS`) in its canonical lowercase hex, as python-threatexchange's
        `VideoMD5Signal` / `VideoSHA256Signal` validate it; ValueError naming the problem."""
        return validate(kind, text, f"{kind} digest")

    def values(self, media: Media, frame_index: int, pixels: np.ndarray) -> list[tuple[str, str]]:
        """The digests of one frame's pixels, and with the first frame those of the file (its
        SHA-256 is the one decoding already computed)."""
        pixel = [("pixels", pixel_digest(pixels))]
        if frame_index != 0:
            return pixel
        return [("sha256", media.sha256), ("md5", hashlib.md5(media.data, usedforsecurity=False).hexdigest())] + pixel

    # -- storage ------------------------------------------------------------------------------------

    def reference_values(self, image: ReferenceImage) -> list[tuple[str, str]]:
        """The file's digests once per image; the pixels' of the part that is the reference."""
        return self.values(image.media, image.frame.index, image.box.crop(image.frame))

    def encode(self, values: list[tuple[str, str]]) -> dict:
        return {"embeddings": [[1.0]] * len(values)}

    def decode(self, page: dict) -> list[tuple[str, str]]:
        return [(md["kind"], md["digest"]) for md in page["metadatas"]]

    def record_metadata(self, value: tuple) -> dict:
        return {"kind": value[0], "digest": value[1]}

    # -- matching -----------------------------------------------------------------------------------

    def find(self, query: Query, context: Context, rules: DigestRules) -> list[Evidence]:
        media, frame = query.media, query.frame
        if media is None or not context.banks:
            return []
        return self.lookup(context, self.values(media, frame.index, frame.pixels), query.regions[0])

    def lookup(self, context: Context, wanted: list[tuple[str, str]], region: Region | None = None) -> list[Evidence]:
        """Evidence for every reference of the context's banks holding one of the (kind, digest) pairs."""
        index = context.snapshot.indexes[self.name]
        found = []
        for (kind, _), positions in zip(wanted, index.positions(wanted)):
            for position in positions:
                bank, reference_id = split_record_id(index.record_ids.id_at(position))
                if bank in context.banks:
                    found.append(Evidence(self.name, self.measure, 0, bank, reference_id, region, kind))
        return found

    def search(self, query: Query, context: Context, rules: DigestRules, min_similarity: float) -> list[Evidence]:
        return self.find(query, context, rules)

    def similarity(self, value: float) -> float:
        return 1.0  # only exact copies are found

    def holds(self, reference: tuple[str, str], context: Context) -> bool:
        return bool(context.snapshot.indexes[self.name].record_ids.prefix_mask(prefix(*reference)).any())


DIGEST = DigestSignal()
