"""Record ids: how a reference's records are named in Chroma and in the derived indexes.

Every record of a reference is `BANK::REFERENCE_ID::N`, N counting that reference's records of one
kind (its hashes, its images). Bank names cannot contain `::`; reference ids may, so the bank is
the part before the first `::` and N the part after the last. Built and parsed only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np


def record_id(bank: str, reference_id: str, n: int) -> str:
    return f"{bank}::{reference_id}::{n}"


def prefix(bank: str, reference_id: str | None = None) -> str:
    """What every record id of a bank (or of one of its references) starts with."""
    return f"{bank}::" if reference_id is None else f"{bank}::{reference_id}::"


def check_reference_id(ref_id: str) -> None:
    """ValueError unless `ref_id` is 1-512 printable characters."""
    if not ref_id or len(ref_id) > 512 or any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in ref_id):
        raise ValueError(f"reference id {ref_id[:80]!r}: use 1-512 printable characters")


def split_record_id(rid: str) -> tuple[str, str]:
    """(bank, reference_id) of a record id."""
    bank, rest = rid.split("::", 1)
    return bank, rest.rsplit("::", 1)[0]


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

    def check(self) -> None:
        """ValueError unless the offsets cover the blob exactly (a half-written or mixed save)."""
        if len(self.offsets) == 0 or int(self.offsets[-1]) != len(self.blob):
            raise ValueError("record ids do not match their offsets")

    def id_at(self, position: int) -> str:
        return bytes(self.blob[self.offsets[position] : self.offsets[position + 1]]).decode()

    def __iter__(self) -> Iterator[str]:
        return (self.id_at(i) for i in range(len(self)))

    def prefix_mask(self, prefix: str) -> np.ndarray:
        """Positions whose record id starts with `prefix`: a bank's (`BANK::`), or one reference's
        (`BANK::REFERENCE_ID::`, then only its own records: the rest is N, so reference `a` does not
        take the records of reference `a::1`)."""
        raw = prefix.encode()
        starts, lengths = self._spans()
        mask = self._bytes_equal(starts, lengths > len(raw), raw)
        if prefix.count("::") > 1:  # bank names hold no "::"
            for position in np.flatnonzero(mask):
                rest = self.id_at(int(position))[len(prefix):]
                mask[position] = rest.isascii() and rest.isdigit()
        return mask

    def first_hash_mask(self) -> np.ndarray:
        """Positions holding a reference's first record (ids ending with `::0`): one per reference."""
        starts, lengths = self._spans()
        return self._bytes_equal(starts + lengths - 3, lengths >= 3, b"::0")

    def _spans(self) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.asarray(self.offsets)
        return offsets[:-1], np.diff(offsets)

    def _bytes_equal(self, at: np.ndarray, candidates: np.ndarray, pattern: bytes) -> np.ndarray:
        """Candidates whose bytes from `at` are `pattern`: byte by byte over the positions still
        matching, so a reference's prefix (70 bytes, say) costs a few passes over a 10M-row index,
        not one a byte."""
        blob = np.frombuffer(self.blob, dtype=np.uint8)
        left = np.flatnonzero(candidates)
        for k, byte in enumerate(pattern):
            if not len(left):
                break
            left = left[blob[at[left] + k] == byte]
        mask = np.zeros(len(candidates), bool)
        mask[left] = True
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
