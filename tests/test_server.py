"""Against a real `chroma run` server on 127.0.0.1, and against one that is down."""

from __future__ import annotations

import json
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
