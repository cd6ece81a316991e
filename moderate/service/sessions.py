"""Review UI sign-in sessions, in the data folder's SQLite (so every `serve` worker knows them).

The browser holds a random session id in an HttpOnly, SameSite=Strict cookie, never the API token:
a stolen cookie ends with the session (sign-out, expiry, or the token's revocation), and the
database keeps only the id's SHA-256. Each session has a CSRF token that every form posts back.
The session also remembers the items its moderator skipped, so `next` moves past them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..sinks.database import Database
from .tokens import Tokens

LIFETIME = 12 * 3600  # a working day; then sign in again
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ui_sessions (id_hash TEXT PRIMARY KEY, token_name TEXT NOT NULL,"
    " csrf TEXT NOT NULL, created_ts REAL NOT NULL, expires_ts REAL NOT NULL, skipped TEXT NOT NULL DEFAULT '[]')",
)


@dataclass(frozen=True)
class Session:
    id_hash: str
    moderator: str
    csrf: str
    skipped: frozenset[int]

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(sent, self.csrf)


class Sessions(Database):
    def __init__(self, data_dir: Path, tokens: Tokens):
        super().__init__(Path(data_dir), SCHEMA)
        self.tokens = tokens

    def start(self, secret: str) -> str | None:
        """A new session id for a moderator (or admin) token's secret; None when it may not review."""
        token = self.tokens.check(secret)
        if token is None or not token.allows("moderator"):
            return None
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        self.db.execute("DELETE FROM ui_sessions WHERE expires_ts < ?", (now,))
        self.db.execute("INSERT INTO ui_sessions (id_hash, token_name, csrf, created_ts, expires_ts) VALUES (?, ?, ?, ?, ?)",
                        (_digest(session_id), token.name, secrets.token_urlsafe(24), now, now + LIFETIME))
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value, if its token still exists and may review."""
        if not session_id:
            return None
        row = self.db.execute("SELECT * FROM ui_sessions WHERE id_hash = ? AND expires_ts >= ?",
                              (_digest(session_id), time.time())).fetchone()
        if row is None:
            return None
        token = self.tokens.named(row["token_name"])
        if token is None or not token.allows("moderator"):  # revoked since sign-in
            self.end(session_id)
            return None
        return Session(row["id_hash"], row["token_name"], row["csrf"], frozenset(json.loads(row["skipped"])))

    def skip(self, session: Session, item_id: int) -> None:
        skipped = sorted(session.skipped | {item_id})[-500:]  # bounded: the oldest skips fall off
        self.db.execute("UPDATE ui_sessions SET skipped = ? WHERE id_hash = ?", (json.dumps(skipped), session.id_hash))

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.db.execute("DELETE FROM ui_sessions WHERE id_hash = ?", (_digest(session_id),))


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
