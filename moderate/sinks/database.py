"""The data folder's SQLite database (review queue, audit log, webhook outbox, UI sessions): WAL, one
connection per thread; a store subclasses it or holds one.

WAL lets readers work while a writer writes, and several processes (workers, servers, hooks) share
the file safely. Each thread gets its own connection, because explicit transactions (the audit
log's `BEGIN IMMEDIATE`) on a shared connection would interleave between threads of a server.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from ..errors import StoreError


BUSY_SECONDS = 30  # how long a connection waits for another's lock


def _into_wal(connection: sqlite3.Connection) -> None:
    """Switch to write-ahead logging. The switch takes an exclusive lock and SQLite does not wait
    for it (no busy handler): processes opening a new database at once (a check's workers, each
    writing the audit log) got "database is locked" and the whole command failed. So it waits."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Database:
    def __init__(self, data_dir: Path, schema: tuple[str, ...]):
        self.path = Path(data_dir) / "moderate.sqlite3"
        self.schema = schema
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
                _into_wal(connection)
                connection.execute("PRAGMA synchronous=NORMAL")
                for statement in self.schema:
                    connection.execute(statement)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"{self.path}: cannot open the database: {exc}") from None
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
        return connection
