"""What a spawned process runs in `test_processes_opening_a_new_database_at_once_all_open_it`: kept
apart from the test modules so that spawning imports little."""

from pathlib import Path


def open_and_write(folder: str, start, results) -> None:
    from moderate.errors import StoreError
    from moderate.sinks.database import Database

    start.wait()
    try:
        Database(Path(folder), ("CREATE TABLE IF NOT EXISTS t (x)",)).db.execute("INSERT INTO t VALUES (1)")
        results.put("ok")
    except StoreError as exc:
        results.put(str(exc))
