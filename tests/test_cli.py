"""The real `moderate` command in new processes: exit codes, JSON, stdin, batches, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from .conftest import BIN, run_cli

JSON_FIELDS = {"source", "frame", "verdict", "reasons", "error", "elapsed_ms"}
REASON_FIELDS = {"rule", "action", "bank", "reference_id", "signal", "distance", "score", "region"}


@pytest.fixture
def cli_bank(data_dir, flagged_folder):
    """A TERROR bank built through the CLI itself."""
    assert run_cli("bank", "create", "TERROR", "--action", "block", "--description", "x", data_dir=data_dir).returncode == 0
    added = run_cli("bank", "add", "TERROR", str(flagged_folder), "--recursive", "--source-url",
                    "https://example.org/x", "--note", "case 17", data_dir=data_dir)
    assert added.returncode == 0, added.stderr
    assert b"added 4 references to TERROR" in added.stdout
    return data_dir


def verdicts(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def test_exit_codes_and_json_fields(cli_bank, photos, edited, tmp_path):
    blocked = edited[0][2]
    out = run_cli("check", str(blocked), "--json", data_dir=cli_bank)
    assert out.returncode == 4, out.stderr
    (v,) = verdicts(out.stdout)
    assert JSON_FIELDS <= set(v) and v["verdict"] == "block" and v["error"] is None
    assert REASON_FIELDS <= set(v["reasons"][0]) and v["reasons"][0]["reference_id"] == "astronaut"

    clean = run_cli("check", str(photos["chelsea"]), str(photos["moon"]), "--json", data_dir=cli_bank)
    assert clean.returncode == 0 and [v["verdict"] for v in verdicts(clean.stdout)] == ["allow", "allow"]

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    review = run_cli("check", str(photos["chelsea"]), str(broken), "--json", data_dir=cli_bank)
    assert review.returncode == 3
    bad = [v for v in verdicts(review.stdout) if v["source"] == str(broken)][0]
    assert bad["verdict"] == "review" and bad["error"] and bad["error_code"]

    mixed = run_cli("check", str(broken), str(blocked), data_dir=cli_bank)
    assert mixed.returncode == 4
    assert b"BLOCK" in mixed.stdout and b"REVIEW" in mixed.stdout


def test_stdin_is_checked(cli_bank, photos):
    out = run_cli("check", "-", "--json", data_dir=cli_bank, stdin=photos["rocket"].read_bytes())
    assert out.returncode == 4
    (v,) = verdicts(out.stdout)
    assert v["source"] == "<stdin>" and v["reasons"][0]["reference_id"] == "rocket"


def test_folder_batch_with_workers(cli_bank, edited, photos, tmp_path):
    incoming = tmp_path / "incoming" / "deep"
    incoming.mkdir(parents=True)
    for _, edit, path in edited[:8]:
        shutil.copy(path, incoming / path.name)
    shutil.copy(photos["coins"], incoming.parent / "coins.png")
    out = run_cli("check", str(incoming.parent), "--recursive", "--workers", "2", "--json", data_dir=cli_bank)
    assert out.returncode == 4, out.stderr
    got = {v["source"]: v["verdict"] for v in verdicts(out.stdout)}
    assert len(got) == 9 and got[str(incoming.parent / "coins.png")] == "allow"
    assert sum(v == "block" for v in got.values()) == 8
    shallow = run_cli("check", str(incoming.parent), "--json", data_dir=cli_bank)
    assert [v["source"] for v in verdicts(shallow.stdout)] == [str(incoming.parent / "coins.png")]


def test_bank_change_is_seen_by_the_next_process(cli_bank, photos):
    assert run_cli("bank", "create", "OTHER", data_dir=cli_bank).returncode == 0  # so there is still a bank to check against
    assert run_cli("check", str(photos["astronaut"]), data_dir=cli_bank).returncode == 4
    assert run_cli("bank", "disable", "TERROR", data_dir=cli_bank).returncode == 0
    assert run_cli("check", str(photos["astronaut"]), data_dir=cli_bank).returncode == 0
    assert run_cli("bank", "enable", "TERROR", data_dir=cli_bank).returncode == 0
    assert run_cli("bank", "remove", "TERROR", "astronaut", data_dir=cli_bank).returncode == 0
    assert run_cli("check", str(photos["astronaut"]), data_dir=cli_bank).returncode == 0
    assert run_cli("check", str(photos["rocket"]), data_dir=cli_bank).returncode == 4


def test_import_export_and_list(cli_bank, tmp_path):
    listing = run_cli("bank", "list", "--json", data_dir=cli_bank)
    (bank,) = json.loads(listing.stdout)
    assert (bank["name"], bank["references"]) == ("TERROR", 4)
    exported = run_cli("bank", "export", "TERROR", "--format", "csv", data_dir=cli_bank)
    assert exported.returncode == 0
    lines = exported.stdout.decode().splitlines()
    assert lines[0].startswith("signal_type,signal_str,bank,reference_id") and len(lines) == 5
    assert "https://example.org/x" in lines[1]
    hash_file = tmp_path / "out.csv"
    hash_file.write_bytes(exported.stdout)
    assert run_cli("bank", "create", "COPY", "--action", "review", data_dir=cli_bank).returncode == 0
    imported = run_cli("bank", "import", "COPY", str(hash_file), data_dir=cli_bank)
    assert imported.returncode == 0 and b"imported 4 hashes" in imported.stdout

    bad = tmp_path / "bad.txt"
    bad.write_text("pdq " + "a" * 64 + "\npdq 123\n")
    refused = run_cli("bank", "import", "COPY", str(bad), data_dir=cli_bank)
    assert refused.returncode == 1
    assert refused.stderr.decode().strip().count("\n") == 0
    assert f"{bad}:2: pdq hash must be 64 hex characters" in refused.stderr.decode()


def test_command_failures_exit_1_with_one_line(cli_bank, photos, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("pdq:\n  min_quality: high\n")
    cases = [
        ("check", str(photos["astronaut"]), "--policy", str(policy)),
        ("bank", "add", "NOPE", str(photos["astronaut"])),
        ("bank", "create", "bad name"),
        ("bank", "add", "TERROR", str(photos["astronaut"])),  # id 'astronaut' already used
        ("bank", "import", "TERROR", str(tmp_path / "missing.csv")),
        ("bank", "delete", "TERROR"),  # needs --yes off a terminal
    ]
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("x")
    file_as_data = run_cli("check", str(photos["astronaut"]), data_dir=not_a_folder)
    assert file_as_data.returncode == 1 and file_as_data.stderr.decode().count("\n") == 1
    assert file_as_data.stderr.decode().startswith("error: ")
    for args in cases:
        out = run_cli(*args, data_dir=cli_bank)
        err = out.stderr.decode()
        assert out.returncode == 1, (args, out.stdout, err)
        assert err.startswith("error: ") and err.count("\n") == 1, (args, err)
    assert "pdq.min_quality" in run_cli(*cases[0], data_dir=cli_bank).stderr.decode()


def test_usage_errors_exit_2(cli_bank):
    assert run_cli("check", data_dir=cli_bank).returncode == 2
    assert run_cli("check", "x.jpg", "--workers", "0", data_dir=cli_bank).returncode == 2
    assert run_cli("frobnicate", data_dir=cli_bank).returncode == 2


def test_hash_command(photos, tmp_path):
    out = run_cli("hash", str(photos["astronaut"]), "--json", data_dir=tmp_path / "unused")
    assert out.returncode == 0
    (record,) = verdicts(out.stdout)
    assert record["signals"][0]["signal"] == "pdq" and len(record["signals"][0]["hash"]) == 64
    text = run_cli("hash", "--dihedral", "-", stdin=photos["coffee"].read_bytes(), data_dir=tmp_path / "unused")
    assert len(text.stdout.decode().splitlines()) == 8


def test_delete_with_yes(cli_bank, photos):
    out = run_cli("bank", "delete", "TERROR", "--yes", data_dir=cli_bank)
    assert out.returncode == 0 and b"deleted bank TERROR" in out.stdout
    after = run_cli("check", str(photos["astronaut"]), data_dir=cli_bank)
    assert after.returncode == 1 and b"nothing to check against" in after.stderr  # no bank left: not an allow


PROBE = """
import sys, runpy
sys.argv = {argv!r}
try:
    runpy.run_module("moderate.cli", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "transformers", "onnxruntime", "chromadb", "threatexchange") if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


def _imported_heavy(argv: list[str], data_dir) -> list[str]:
    code = PROBE.format(argv=["moderate", *argv])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                         env={"MODERATE_HOME": str(data_dir), "PATH": ""})
    line = [l for l in out.stderr.decode().splitlines() if l.startswith("HEAVY=")][-1]
    return [m for m in line[len("HEAVY="):].split(",") if m]


def test_help_and_pdq_check_do_not_import_heavy_modules(cli_bank, photos):
    assert _imported_heavy(["--help"], cli_bank) == []
    run_cli("check", str(photos["chelsea"]), data_dir=cli_bank)  # settles the index stamp after the add
    assert _imported_heavy(["check", str(photos["astronaut"])], cli_bank) == []


def test_long_lived_engine_sees_writes_by_other_processes(data_dir, photos):
    from moderate import Engine

    engine = Engine(data_dir)
    engine.banks.create("LIVE")
    assert engine.check(photos["coffee"]).verdict == "allow"
    assert run_cli("bank", "add", "LIVE", str(photos["coffee"]), data_dir=data_dir).returncode == 0
    assert engine.check(photos["coffee"]).verdict == "block"
    assert [r.id for r in engine.banks.references("LIVE")] == ["coffee"]
    assert run_cli("bank", "remove", "LIVE", "coffee", data_dir=data_dir).returncode == 0
    assert engine.check(photos["coffee"]).verdict == "allow"


def test_together_explain_and_region_from_the_command_line(cli_bank, photos, tmp_path):
    rocket = Image.open(photos["rocket"]).convert("RGB")
    crop = tmp_path / "crop.jpg"
    rocket.crop((0, 0, 420, 300)).save(crop, quality=90)
    together = run_cli("check", "--together", "--json", str(photos["chelsea"]), str(crop), data_dir=cli_bank)
    assert together.returncode == 4, together.stderr
    (item,) = verdicts(together.stdout)
    assert item["verdict"] == "block" and item["source"] == f"{photos['chelsea']} + {crop}"
    assert item["reasons"][0]["source"] == str(crop) and item["reasons"][0]["inliers"] >= 20

    picture = tmp_path / "explained.png"
    explained = run_cli("explain", str(crop), "rocket", "--json", "--out", str(picture), data_dir=cli_bank)
    assert explained.returncode == 0, explained.stderr
    found = json.loads(explained.stdout)
    assert found["matched"] is True and found["bank"] == "TERROR"
    keypoints = next(s for s in found["signals"] if s["signal"] == "keypoints")
    assert keypoints["matched"] and len(keypoints["polygon"]) == 4
    drawn = np.asarray(Image.open(picture).convert("RGB")).reshape(-1, 3)
    assert ((drawn[:, 1] > 200) & (drawn[:, 0] < 30) & (drawn[:, 2] < 30)).sum() > 200  # the green outline
    unrelated = run_cli("explain", str(photos["moon"]), "rocket", data_dir=cli_bank)
    assert unrelated.returncode == 0 and unrelated.stdout.startswith(b"NO MATCH")
    missing = run_cli("explain", str(crop), "nope", data_dir=cli_bank)
    assert missing.returncode == 1 and b"no bank has a reference 'nope'" in missing.stderr

    added = run_cli("bank", "add", "TERROR", str(photos["hubble"]), "--id", "galaxy", "--region", "0,0,0.5,0.5", "--json",
                    data_dir=cli_bank)
    assert added.returncode == 0 and json.loads(added.stdout)["added"] == ["galaxy"]
    bad = run_cli("bank", "add", "TERROR", str(photos["hubble"]), "--id", "g2", "--region", "1,2,3", data_dir=cli_bank)
    assert bad.returncode == 1 and b"expected x,y,w,h" in bad.stderr and len(bad.stderr.splitlines()) == 1


def _as_unprivileged(*args: str, data_dir) -> subprocess.CompletedProcess:
    """The CLI without root's power to read anything: as root, drop the capabilities that bypass
    file permissions (the interpreter lives under /root, so another user could not even start it)."""
    import os

    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    command = [*prefix, str(BIN / "moderate"), *args]
    return subprocess.run(command, capture_output=True, timeout=300, env={**os.environ, "MODERATE_HOME": str(data_dir)})


def test_recursive_check_reports_hidden_and_unreadable_entries(cli_bank, photos, edited, tmp_path):
    incoming = tmp_path / "incoming"
    (incoming / ".cache").mkdir(parents=True)
    shutil.copy(photos["chelsea"], incoming / "cat.png")
    shutil.copy(edited[0][2], incoming / ".hidden.jpg")  # flagged, in a hidden file
    shutil.copy(photos["rocket"], incoming / ".cache" / "rocket.png")  # flagged, in a hidden folder
    seen = run_cli("check", str(incoming), "--recursive", "--json", data_dir=cli_bank)
    assert seen.returncode == 4, seen.stderr
    got = {v["source"]: v["verdict"] for v in verdicts(seen.stdout)}
    assert got == {str(incoming / "cat.png"): "allow", str(incoming / ".hidden.jpg"): "block",
                   str(incoming / ".cache" / "rocket.png"): "block"}

    locked = incoming / ".cache"
    locked.chmod(0)  # a sub-folder this process cannot list
    try:
        out = _as_unprivileged("check", str(incoming), "--recursive", "--json", data_dir=cli_bank)
    finally:
        locked.chmod(0o755)
    assert out.returncode == 4, out.stderr  # .hidden.jpg still blocks; the locked folder is reported
    by_source = {v["source"]: v for v in verdicts(out.stdout)}
    unreadable = by_source[str(locked)]
    assert (unreadable["verdict"], unreadable["error_code"]) == ("review", "unreadable")
    assert unreadable["error"].startswith(f"{locked}: cannot list the folder") and "\n" not in unreadable["error"]


def test_special_entries_in_a_folder_get_on_error_and_the_batch_goes_on(cli_bank, photos, tmp_path):
    import os

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shutil.copy(photos["chelsea"], incoming / "cat.png")
    os.mkfifo(incoming / "pipe.jpg")  # opening it would block forever
    (incoming / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (incoming / "loop").symlink_to(incoming)  # a link back up: reported, not walked forever
    out = run_cli("check", str(incoming), "--recursive", "--json", data_dir=cli_bank)
    assert out.returncode == 3, out.stderr
    got = {v["source"]: (v["verdict"], v["error_code"]) for v in verdicts(out.stdout)}
    assert got == {str(incoming / "cat.png"): ("allow", None), str(incoming / "pipe.jpg"): ("review", "not_a_file"),
                   str(incoming / "gone.png"): ("review", "not_found"), str(incoming / "loop"): ("review", "not_a_file")}
    # `bank add` keeps its rule for hidden files, but refuses what it cannot read instead of skipping it
    refused = run_cli("bank", "add", "TERROR", str(incoming), "--recursive", data_dir=cli_bank)
    assert refused.returncode == 1 and f"{incoming / 'gone.png'}: is a broken symbolic link" in refused.stderr.decode()
    assert refused.stderr.decode().count("\n") == 1


def test_a_check_with_nothing_to_check_against_fails(cli_bank, photos, tmp_path):
    assert run_cli("bank", "disable", "TERROR", data_dir=cli_bank).returncode == 0
    out = run_cli("check", str(photos["astronaut"]), data_dir=cli_bank)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {cli_bank}: nothing to check against") and b"ALLOW" not in out.stdout
    # the allow-list of known false positives flags nothing: still nothing to check against
    run_cli("bank", "create", "ALLOWLIST", "--action", "review", "--kind", "allowlist", data_dir=cli_bank)
    assert run_cli("check", str(photos["astronaut"]), data_dir=cli_bank).returncode == 1
