"""The data folder's SQLite database (review queue, audit log, webhook outbox, UI sessions): WAL, one
connection per thread; a store subclasses it or holds one.

WAL lets readers work while a writer writes, and several processes (workers, servers, hooks) share
the file safely. Each thread gets its own connection, because explicit transactions (the audit
log's `BEGIN IMMEDIATE`) on a shared connection would interleave between threads of a server.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ..errors import StoreError


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
                connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                for statement in self.schema:
                    connection.execute(statement)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"{self.path}: cannot open the database: {exc}") from None
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
        return connection
