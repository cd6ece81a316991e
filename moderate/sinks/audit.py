"""The audit log: every verdict and every moderator decision, append-only and hash-chained.

Each entry stores when, who (the actor: a user, a token name, a hook), what kind, the input's
SHA-256 (never the input), the verdict and its reasons. Entry n carries the SHA-256 of entry n-1
and of its own canonical JSON, so editing or deleting a past entry breaks the chain from there on:
`moderate audit verify` names the first entry that no longer fits.

SQLite (`moderate.sinks.database`), appends under `BEGIN IMMEDIATE` so concurrent
writers (workers, servers, hooks) serialize on the chain head and never fork it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .database import Database
from ..errors import StoreError

GENESIS = "0" * 64


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str
    actor: str
    kind: str
    input_sha256: str | None
    verdict: str | None
    detail: dict
    prev_hash: str
    hash: str

    def to_dict(self) -> dict:
        return {"seq": self.seq, "time": self.time, "actor": self.actor, "kind": self.kind,
                "input_sha256": self.input_sha256, "verdict": self.verdict, "detail": self.detail,
                "prev_hash": self.prev_hash, "hash": self.hash}


def _entry_hash(prev_hash: str, body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL,"
    " kind TEXT NOT NULL, input_sha256 TEXT, verdict TEXT, detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
)


class AuditLog:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self._database = Database(self.data_dir, SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        return self._database.db

    def append(self, actor: str, kind: str, input_sha256: str | None, verdict: str | None, detail: dict) -> Entry:
        db = self.db
        body = {"time": datetime.now(timezone.utc).isoformat(timespec="microseconds"), "actor": actor, "kind": kind,
                "input_sha256": input_sha256, "verdict": verdict, "detail": detail}
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                head = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev_hash = (head["seq"] + 1, head["hash"]) if head else (1, GENESIS)
                digest = _entry_hash(prev_hash, {"seq": seq, **body})
                db.execute(
                    "INSERT INTO audit (seq, time, actor, kind, input_sha256, verdict, detail, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, body["time"], actor, kind, input_sha256, verdict, json.dumps(detail, sort_keys=True),
                     prev_hash, digest),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.data_dir / 'moderate.sqlite3'}: audit append failed: {exc}") from None
        return Entry(seq, body["time"], actor, kind, input_sha256, verdict, detail, prev_hash, digest)

    def entries(self, since: int = 0) -> Iterator[Entry]:
        for row in self.db.execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq", (since,)):
            yield Entry(row["seq"], row["time"], row["actor"], row["kind"], row["input_sha256"], row["verdict"],
                        json.loads(row["detail"]), row["prev_hash"], row["hash"])

    def tail(self, count: int = 20) -> list[Entry]:
        last = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]
        return list(self.entries(since=max(0, last - count)))

    def verify(self) -> tuple[int, str | None]:
        """(entries checked, None) when the chain holds, else (seq of the first broken entry, why)."""
        prev_hash, expected_seq, count = GENESIS, 1, 0
        for entry in self.entries():
            if entry.seq != expected_seq:
                return entry.seq, f"entry {expected_seq} is missing"
            if entry.prev_hash != prev_hash:
                return entry.seq, "does not follow the entry before it"
            body = {"seq": entry.seq, "time": entry.time, "actor": entry.actor, "kind": entry.kind,
                    "input_sha256": entry.input_sha256, "verdict": entry.verdict, "detail": entry.detail}
            if _entry_hash(prev_hash, body) != entry.hash:
                return entry.seq, "its content was changed after it was written"
            prev_hash, expected_seq, count = entry.hash, expected_seq + 1, count + 1
        return count, None
