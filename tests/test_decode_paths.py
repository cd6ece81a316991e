"""Every path problem is that input's error, never a hang or an aborted batch (issue #12, item 9).

Only regular files are read: FIFOs, devices, sockets and directories named where a file is
expected are refused without being opened; symlink loops, over-long names, paths through a file
and folders the caller cannot read are refused with their own `error_code`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest
from PIL import Image

from moderate import MediaError
from moderate.engine import expand_inputs
from moderate.media import decode

from .conftest import BIN, run_cli

# Root reads any folder; without these capabilities it is refused like any user (tests run as root).
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture
def bad_paths(tmp_path) -> dict[str, tuple[str, str]]:
    """name -> (path, expected error_code), each made for real in tmp_path."""
    fifo = tmp_path / "upload.fifo"
    os.mkfifo(fifo)
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    sock = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    locked = tmp_path / "locked"
    locked.mkdir()
    Image.new("RGB", (64, 64), "red").save(locked / "inside.png")
    locked.chmod(0)
    (tmp_path / "plain.png").write_bytes(b"\x89PNG")
    yield {
        "fifo": (str(fifo), "not_a_file"),
        "loop": (str(tmp_path / "loop-a"), "bad_path"),
        "long": (str(tmp_path / ("n" * 300 + ".png")), "bad_path"),
        "device": ("/dev/zero", "not_a_file"),
        "socket": (str(sock), "not_a_file"),
        "through-a-file": (str(tmp_path / "plain.png" / "x.png"), "not_found"),
        "locked": (str(locked / "inside.png"), "unreadable"),
    }
    server.close()
    locked.chmod(0o755)


@pytest.fixture
def data(tmp_path, photos):
    """A data folder with a bank to check against (a check with nothing to check against fails)."""
    from moderate import Engine

    engine = Engine(tmp_path / "data")
    engine.banks.create("TERROR", action="block")
    engine.banks.add("TERROR", [photos["rocket"]])
    return tmp_path / "data"


@pytest.fixture
def good(tmp_path, photos) -> str:
    path = tmp_path / "good.png"
    shutil.copy(photos["coins"], path)
    return str(path)


def _check(*args: str, data_dir, prefix=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODERATE_HOME": str(data_dir)}
    return subprocess.run([*prefix, str(BIN / "moderate"), "check", "--json", *args], capture_output=True, env=env,
                          timeout=120)


def test_fifo_given_as_input_does_not_hang(tmp_path, good, data):
    """Issue #12 item 9: `check upload.fifo` blocked forever in open()."""
    fifo = tmp_path / "upload.fifo"
    os.mkfifo(fifo)
    out = _check(str(fifo), good, data_dir=data)  # subprocess timeout: a hang fails the test
    verdicts = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert out.returncode == 3, out.stderr.decode()
    assert [(v["source"], v["verdict"], v["error_code"]) for v in verdicts] == [
        (str(fifo), "review", "not_a_file"), (good, "allow", None)]
    assert verdicts[0]["error"] == f"{fifo}: is a named pipe (FIFO), not a regular file [not_a_file]"


def test_every_path_problem_is_that_inputs_error_in_one_batch(bad_paths, good, tmp_path, data):
    """Loops, long names, devices, sockets, unreadable folders: each gets its own verdict, the good
    file is still checked, and the exit code is review's (3), not the command's failure (1)."""
    names = list(bad_paths)
    out = _check(*(bad_paths[n][0] for n in names), good, data_dir=data, prefix=NO_OVERRIDE)
    assert out.returncode == 3, out.stderr.decode()
    verdicts = {v["source"]: v for v in map(json.loads, out.stdout.decode().splitlines())}
    for name in names:
        path, code = bad_paths[name]
        verdict = verdicts[path]
        assert (verdict["verdict"], verdict["error_code"]) == ("review", code), name
        assert verdict["error"].startswith(path + ": ") and "\n" not in verdict["error"]
    assert verdicts[good]["verdict"] == "allow"


def test_bad_paths_in_a_batch_checked_by_worker_processes(bad_paths, good, tmp_path, data):
    """With 16 inputs or more, inputs go to worker processes: a bad path must not break the pool."""
    inputs = [bad_paths[n][0] for n in ("fifo", "loop", "long", "device")] + [good] * 14
    out = run_cli("check", "--json", "--workers", "2", *inputs, data_dir=data)
    verdicts = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert out.returncode == 3 and len(verdicts) == 18
    assert sorted(v["error_code"] or "" for v in verdicts)[-4:] == ["bad_path", "bad_path", "not_a_file", "not_a_file"]


def test_directory_where_a_file_is_expected(tmp_path, good):
    """`hash` and `search` take files: a folder is that input's error, and the other inputs are done."""
    out = run_cli("hash", str(tmp_path), good)
    assert out.returncode == 1
    assert b"is a directory, not a regular file" in out.stderr and b"not_a_file" in out.stderr
    assert out.stdout.decode().count("pdq ") == 1 and good in out.stdout.decode()
    with pytest.raises(MediaError) as info:
        decode(tmp_path)
    assert info.value.code == "not_a_file"


def test_hash_goes_on_past_a_fifo_and_a_loop(bad_paths, good):
    out = run_cli("hash", bad_paths["fifo"][0], good, bad_paths["loop"][0])
    assert out.returncode == 1 and out.stdout.decode().count("pdq ") == 1
    assert out.stderr.decode().count("error: ") == 2


def test_expanding_inputs_never_raises(bad_paths):
    paths = [p for p, _ in bad_paths.values()]
    assert expand_inputs(paths) == paths  # each is left for reading to refuse, one by one


def test_bank_add_and_dedup_skip_bad_paths(bad_paths, engine, photos, tmp_path):
    engine.banks.create("T", action="block")
    report = engine.banks.add("T", [bad_paths["fifo"][0], bad_paths["loop"][0], photos["astronaut"]], skip_invalid=True)
    assert [r.id for r in report.added] == ["astronaut"] and len(report.skipped) == 2
    out = run_cli("dedup", bad_paths["fifo"][0], bad_paths["device"][0], str(photos["coins"]), data_dir=tmp_path / "d")
    assert out.returncode == 0 and out.stderr.decode().count("skipped: ") == 2


def test_a_fifo_signature_beside_an_upload_is_invalid_not_a_hang(tmp_path, good, data):
    """The same kind on the provenance path: `FILE.sig.json` beside a checked file is only read if
    it is a regular file; a FIFO there makes the signature invalid, and the batch goes on."""
    os.mkfifo(good + ".sig.json")
    out = _check(good, data_dir=data)  # subprocess timeout: a hang fails the test
    (verdict,) = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert out.returncode == 0, out.stderr.decode()
    assert verdict["provenance"]["state"] == "invalid" and "FIFO" in verdict["provenance"]["detail"]
    verified = run_cli("verify", good, data_dir=data)
    assert verified.returncode == 8 and b"FIFO" in verified.stdout + verified.stderr


@pytest.mark.parametrize("command", [("check", "--policy", "{fifo}", "{good}"), ("bank", "import", "TERROR", "{fifo}"),
                                     ("keys", "trust", "{fifo}", "--name", "x"), ("keys", "trust-c2pa", "{fifo}"),
                                     ("verify", "{good}", "--signature", "{fifo}")])
def test_a_fifo_named_as_a_policy_or_a_hash_list_is_refused_not_waited_on(tmp_path, good, data, command):
    """The same kind for what commands read besides inputs (policies, hash lists, keys,
    certificates, signatures): only regular files are read, so nothing hangs."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    out = run_cli(*(part.format(fifo=fifo, good=good) for part in command), data_dir=data)
    assert out.returncode == 1, out.stderr
    assert out.stderr.decode().count("\n") == 1 and "named pipe (FIFO)" in out.stderr.decode()
