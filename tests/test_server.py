"""Against a real `chroma run` server on 127.0.0.1, and against one that is down."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest

from moderate import Engine, StoreError

from .conftest import free_port, run_cli


@pytest.fixture
def server_engine(chroma_server, tmp_path):
    # Each test gets its own data folder; the server is shared, so bank names are made unique.
    return Engine(data_dir=tmp_path / "data", chroma_url=chroma_server)


def test_banks_and_checks_through_a_server(server_engine, chroma_server, flagged_folder, photos, edited, tmp_path):
    name = f"T{uuid.uuid4().hex[:8]}"
    server_engine.banks.create(name, action="block")
    server_engine.banks.create(f"{name}-other", action="review")  # still a bank to check against once `name` is off
    server_engine.banks.add(name, [flagged_folder], recursive=True)
    for photo, edit, path in edited[:8]:
        verdict = server_engine.check(path)
        assert verdict.verdict == "block" and verdict.reasons[0].bank == name, (photo, edit)
    assert server_engine.check(photos["chelsea"]).verdict == "allow"

    # Another process with another data folder sees the same bank through the server.
    other = tmp_path / "other"
    out = run_cli("--chroma-url", chroma_server, "check", str(photos["rocket"]), "--json", data_dir=other)
    assert out.returncode == 4, out.stderr
    assert json.loads(out.stdout)["reasons"][0]["bank"] == name

    # A change by that process is seen here: the index follows the server's generation.
    assert run_cli("--chroma-url", chroma_server, "bank", "disable", name, data_dir=other).returncode == 0
    assert server_engine.check(photos["rocket"]).verdict == "allow"
    run_cli("--chroma-url", chroma_server, "bank", "delete", name, "--yes", data_dir=other)
    server_engine.banks.delete(f"{name}-other")


def test_import_export_through_a_server(server_engine):
    name = f"S{uuid.uuid4().hex[:8]}"
    server_engine.banks.create(name, action="review")
    text = "".join(f"pdq {uuid.uuid4().hex}{uuid.uuid4().hex}\n" for _ in range(300))
    assert server_engine.banks.import_hashes(name, text).imported == 300
    assert server_engine.banks.import_hashes(name, text).already_present == 300
    assert server_engine.banks.get(name).hashes == 300
    server_engine.banks.delete(name)


def test_chroma_down_is_a_clear_command_failure(tmp_path, photos):
    url = f"http://127.0.0.1:{free_port()}"
    engine = Engine(data_dir=tmp_path, chroma_url=url)
    with pytest.raises(StoreError, match="127.0.0.1"):
        engine.check(photos["astronaut"])
    out = run_cli("--chroma-url", url, "check", str(photos["astronaut"]), data_dir=tmp_path)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.startswith(f"error: {url}: connecting failed") and err.count("\n") == 1
    assert run_cli("--chroma-url", url, "bank", "list", data_dir=tmp_path).returncode == 1


@pytest.fixture
def silent_server():
    """A real socket that accepts connections and never answers (a hung Chroma server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    listener.close()


def test_a_server_that_never_answers_times_out_with_one_line(silent_server, tmp_path, photos):
    start = time.monotonic()
    out = run_cli("--chroma-url", silent_server, "check", str(photos["astronaut"]), data_dir=tmp_path,
                  env={"MODERATE_CHROMA_TIMEOUT": "2"})
    err = out.stderr.decode()
    assert time.monotonic() - start < 60
    assert out.returncode == 1 and err.count("\n") == 1
    assert err == f"error: {silent_server}: connecting failed: no answer within 2 s (MODERATE_CHROMA_TIMEOUT)\n"


def test_every_call_to_a_hung_server_has_a_timeout(silent_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MODERATE_CHROMA_TIMEOUT", "1")
    engine = Engine(data_dir=tmp_path, chroma_url=silent_server)
    start = time.monotonic()
    with pytest.raises(StoreError, match="no answer within 1 s"):
        engine.banks.list()
    assert time.monotonic() - start < 30
    served = run_cli("--chroma-url", silent_server, "serve", "--port", str(free_port()), data_dir=tmp_path,
                     env={"MODERATE_CHROMA_TIMEOUT": "1"})  # the server loads its index first: refused, not hung
    assert served.returncode == 1 and served.stderr.decode().startswith(f"error: {silent_server}: ")
    bad = run_cli("--chroma-url", silent_server, "bank", "list", data_dir=tmp_path, env={"MODERATE_CHROMA_TIMEOUT": "soon"})
    assert bad.returncode == 1 and b"MODERATE_CHROMA_TIMEOUT must be a number of seconds" in bad.stderr
