"""Hash-list packs: how imported hashes are kept in Chroma at millions per list.

A Chroma record costs about 175 µs to add with the metadata a per-hash record needs (measured:
5.8k records/s for PDQ records with five metadata keys, 500k hashes/s as packs of 1,000), and
a list row has nothing a record of its own would give: no image, no vector Chroma searches. So an
import is written as packs: one record per `PACK_ROWS` rows of one bank, in the collection
`moderate-lists`, holding the import's batch-constant metadata once (`base`: who, when, from
where) and its rows as JSON (`ROW`: the signal type as listed, the value, the reference id (null
when it is the value itself, as for unnamed rows), the record number N, the PDQ quality or the
digest's listing flag, and the row's own metadata or null).

Each row is still a record of its signal in the derived indexes, under the id it would have had
(`BANK::REFERENCE_ID::N`), so matching, listing and counting see no difference. `PackMap` (saved
with the snapshot) says which packs hold a reference's rows, so removing one reference rewrites
only its packs. Records written one per hash by earlier versions stay readable as they are.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..ids import prefix, record_id

COLLECTION = "moderate-lists"
PACK_ROWS = 1000  # rows per record: a check reading one reference's metadata parses ~100 kB
ROW = ("list_type", "value", "reference_id", "n", "flag", "metadata")


@dataclass(frozen=True)
class Pack:
    """One Chroma record of list rows; `rows` are `ROW` tuples."""

    id: str
    bank: str
    base: dict
    rows: tuple

    @classmethod
    def new(cls, bank: str, base: dict, rows: Iterable) -> "Pack":
        return cls(f"pack-{secrets.token_hex(8)}", bank, base, tuple(tuple(row) for row in rows))

    def metadata(self) -> dict:
        return {"bank": self.bank, "base": json.dumps(self.base), "rows": json.dumps(self.rows, separators=(",", ":"))}

    @classmethod
    def from_record(cls, pack_id: str, md: dict) -> "Pack":
        return cls(pack_id, md["bank"], json.loads(md["base"]), tuple(tuple(row) for row in json.loads(md["rows"])))

    def reference_metadata(self, row) -> dict:
        """What a row's reference is described by: the import's metadata, then the row's."""
        return {**self.base, **(row[5] or {})}

    def record_ids(self) -> list[str]:
        """The ids its rows have in the derived indexes."""
        return [record_id(self.bank, reference_of(row), row[3]) for row in self.rows]

    def without(self, reference_ids: set[str]) -> "Pack":
        return Pack(self.id, self.bank, self.base, tuple(row for row in self.rows if reference_of(row) not in reference_ids))

    def unlisting(self, reference_ids: set[str]) -> "Pack":
        """The same pack, these references' digest rows no longer listing them (flag 0)."""
        from ..signals import PDQ

        return Pack(self.id, self.bank, self.base, tuple(
            (*row[:4], 0, row[5]) if row[0] != PDQ.name and reference_of(row) in reference_ids else row
            for row in self.rows))

    def renamed(self, bank: str) -> "Pack":
        return Pack(self.id, bank, self.base, self.rows)


def reference_of(row) -> str:
    return row[1] if row[2] is None else row[2]


def packed(bank: str, base: dict, rows: list) -> list[Pack]:
    """Rows of one import into packs of `PACK_ROWS`."""
    return [Pack.new(bank, base, rows[start:start + PACK_ROWS]) for start in range(0, len(rows), PACK_ROWS)]


@dataclass(frozen=True, eq=False)
class PackMap:
    """Which pack holds the rows of which reference: a 64-bit key per (reference, pack) pair, the
    key being a digest of the reference's record prefix (a collision only costs reading one pack
    more: rows are matched by reference id after reading)."""

    keys: np.ndarray = field(repr=False)  # (M,) uint64
    packs: np.ndarray = field(repr=False)  # (M,) fixed-width pack ids

    @classmethod
    def empty(cls) -> "PackMap":
        return cls(np.zeros(0, np.uint64), np.zeros(0, "S21"))

    def __len__(self) -> int:
        return len(self.keys)

    def appended(self, packs: Iterable[Pack]) -> "PackMap":
        pairs = dict.fromkeys((_key(pack.bank, reference_of(row)), pack.id) for pack in packs for row in pack.rows)
        if not pairs:
            return self
        keys, ids = zip(*pairs)
        return PackMap(np.concatenate([self.keys, np.array(keys, np.uint64)]),
                       np.concatenate([self.packs, np.array(ids, "S21")]))

    def packs_of(self, bank: str, reference_ids: Iterable[str]) -> list[str]:
        """Ids of the packs holding rows of these references."""
        return sorted({p.decode() for p in np.asarray(self.packs)[self._mask(bank, reference_ids)]})

    def held(self, bank: str, reference_ids: list[str]) -> set[str]:
        """Which of these references have rows in some pack."""
        present = set(np.asarray(self.keys)[self._mask(bank, reference_ids)].tolist())
        return {ref for ref in reference_ids if _key(bank, ref) in present}

    def _mask(self, bank: str, reference_ids: Iterable[str]) -> np.ndarray:
        wanted = np.array([_key(bank, ref) for ref in reference_ids], np.uint64)
        return np.isin(np.asarray(self.keys), wanted)

    def without_packs(self, pack_ids: Iterable[str]) -> "PackMap":
        gone = np.array([p.encode() for p in pack_ids], "S21")
        keep = ~np.isin(np.asarray(self.packs), gone)
        return PackMap(np.asarray(self.keys)[keep], np.asarray(self.packs)[keep])

    def arrays(self) -> dict:
        return {"keys": self.keys, "packs": self.packs}

    @classmethod
    def load(cls, files) -> "PackMap":
        loaded = cls(files.array("keys"), files.array("packs"))
        if len(loaded.keys) != len(loaded.packs):
            raise ValueError("pack map files do not agree")
        return loaded


def _key(bank: str, reference_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(prefix(bank, reference_id).encode(), digest_size=8).digest(), "little")


def records_of(packs: Iterable[Pack]) -> dict[str, list[tuple[str, object]]]:
    """The (record id, value) pairs of the packs' rows, by signal name: what the derived indexes hold."""
    from ..signals import LIST_TYPES

    out: dict[str, list] = {}
    for pack in packs:
        for rid, row in zip(pack.record_ids(), pack.rows):
            signal = LIST_TYPES[row[0]]
            out.setdefault(signal.name, []).append((rid, signal.listed_value(row[1], row[0], row[4])))
    return out
