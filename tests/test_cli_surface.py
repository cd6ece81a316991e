"""The command line itself, in real `moderate` processes: version, completion, help, choices,
progress on a terminal, and the small commands people reach for (bank refs, keys trust NAME,
hash --recursive, search with no hit, check --together, explain's picture)."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from .conftest import BIN, run_cli


def _text(raw: bytes) -> str:
    """Output with rich's panel borders and line breaks folded away, for matching messages."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", raw.decode()).split())


@pytest.fixture
def cli_bank(data_dir, flagged_folder):
    """A TERROR bank built through the CLI (flagged_folder holds astronaut, coffee, rocket, motorcycle)."""
    assert run_cli("bank", "create", "TERROR", data_dir=data_dir).returncode == 0
    added = run_cli("bank", "add", "TERROR", str(flagged_folder), "--recursive", data_dir=data_dir)
    assert added.returncode == 0, added.stderr
    return data_dir


def test_version(tmp_path):
    from importlib.metadata import version

    out = run_cli("--version", data_dir=tmp_path)
    assert out.returncode == 0 and out.stdout.decode() == f"moderate {version('moderate')}\n"


def test_completion_script_and_real_completions(tmp_path):
    # Named, not detected: typer finds the shell among the parent processes, and a test runner
    # started from a service or a detached job has none ("Shell  not supported").
    script = run_cli("--show-completion", "bash", data_dir=tmp_path, env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.returncode == 0, script.stderr
    assert b"_MODERATE_COMPLETE=complete_bash" in script.stdout and b"complete -o default -F" in script.stdout

    def complete(words: str) -> list[str]:
        out = run_cli(data_dir=tmp_path, env={"_MODERATE_COMPLETE": "complete_bash", "COMP_WORDS": words,
                                              "COMP_CWORD": str(len(words.split(" ")) - 1)})
        assert out.returncode == 0, out.stderr
        return out.stdout.decode().split()

    assert complete("moderate ba") == ["bank"]
    assert complete("moderate bank create X --action ") == ["block", "review"]  # banks.ACTIONS
    assert complete("moderate dedup --signal ") == ["pdq", "embedding", "both"]
    assert complete("moderate search x.jpg --signal e") == ["embedding"]


def test_help_shows_choices_from_the_code_and_no_value_for_flags(tmp_path):
    from moderate.banks import ACTIONS, KINDS
    from moderate.engine.search import choices

    create = run_cli("bank", "create", "--help", data_dir=tmp_path, env={"COLUMNS": "120"}).stdout.decode()
    assert f"<{'|'.join(ACTIONS)}>" in create and f"<{'|'.join(KINDS)}>" in create
    search = run_cli("search", "--help", data_dir=tmp_path, env={"COLUMNS": "120"}).stdout.decode()
    assert f"<{'|'.join(choices())}>" in search
    for command in ([], ["bank", "add"], ["check"], ["dedup"], ["explain"], ["keys", "trust"], ["queue", "list"]):
        shown = run_cli(*command, "--help", data_dir=tmp_path, env={"COLUMNS": "120"}).stdout.decode()
        options = [line for line in shown.splitlines() if line.startswith("│ --")]
        assert options and not [line for line in options if "<bool>" in line or "list[" in line], command
    top = run_cli("--help", data_dir=tmp_path, env={"COLUMNS": "120"}).stdout.decode()
    assert "--version" in top and "--show-completion" in top


def test_help_is_never_cut_short(tmp_path):
    """Rich ellipsizes a word wider than its column: at a usual terminal width, a default or an
    option name must wrap, not be cut (dedup's --prefer default was)."""
    for columns in ("80", "100"):
        for command in (["dedup"], ["bank", "add"], ["check"], ["sign"], ["explain"], ["search"]):
            shown = run_cli(*command, "--help", data_dir=tmp_path, env={"COLUMNS": columns}).stdout.decode()
            assert "…" not in shown, (columns, command, shown)


def test_every_argument_has_help():
    from moderate.cli.common import command

    def arguments(node, path=()):
        for param in node.params:
            if param.param_type_name == "argument":
                yield (*path, node.name, param.name), param
        for name, sub in getattr(node, "commands", {}).items():
            yield from arguments(sub, (*path, node.name))

    missing = [where for where, param in arguments(command()) if not param.help]
    assert missing == []


def test_choices_are_refused_with_a_clear_message(tmp_path, photos):
    cases = [
        (("bank", "create", "X", "--action", "delete"), "'delete' is not one of 'block', 'review'"),
        (("bank", "create", "X", "--kind", "weird"), "'weird' is not one of 'flagged', 'originals', 'allowlist'"),
        (("bank", "export", "X", "--format", "xml"), "'xml' is not one of 'csv', 'txt'"),
        (("hash", str(photos["moon"]), "--signal", "auto"), "'auto' is not one of 'pdq', 'embedding'"),
        (("search", str(photos["moon"]), "--signal", "sift"), "'sift' is not one of 'digest', 'pdq', 'keypoints', 'embedding', 'auto'"),
        (("dedup", str(tmp_path), "--signal", "md5"), "'md5' is not one of 'pdq', 'embedding', 'both'"),
        (("tokens", "create", "ci", "--role", "root"), "'root' is not one of 'checker', 'moderator', 'admin'"),
        (("queue", "list", "--status", "closed"), "'closed' is not one of"),
    ]
    for args, message in cases:
        out = run_cli(*args, data_dir=tmp_path / "data")
        assert out.returncode == 2, (args, out.stderr)
        assert message in _text(out.stderr), (args, _text(out.stderr))
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())  # refused before any work


def test_help_does_not_load_the_modules_that_define_choices(tmp_path):
    probe = ("import sys, runpy\nsys.argv = ['moderate', '--help']\ntry:\n    runpy.run_module('moderate.cli', run_name='__main__')\n"
             "except SystemExit:\n    pass\nsys.stderr.write('LOADED=' + ','.join(m for m in ('numpy', 'moderate.banks') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=120, env={**os.environ, "MODERATE_HOME": str(tmp_path)})
    assert out.stderr.decode().splitlines()[-1] == "LOADED="


def test_bank_refs_lists_reference_ids(cli_bank, photos):
    out = run_cli("bank", "refs", "TERROR", data_dir=cli_bank)
    assert out.returncode == 0 and out.stdout.decode().splitlines() == ["astronaut", "rocket", "set2/coffee", "set2/motorcycle"]
    assert run_cli("bank", "remove", "TERROR", "set2/coffee", data_dir=cli_bank).returncode == 0
    listed = json.loads(run_cli("bank", "refs", "TERROR", "--json", data_dir=cli_bank).stdout)
    assert listed == {"bank": "TERROR", "references": ["astronaut", "rocket", "set2/motorcycle"]}
    assert run_cli("bank", "create", "EMPTY", data_dir=cli_bank).returncode == 0
    empty = run_cli("bank", "refs", "EMPTY", data_dir=cli_bank)
    assert empty.returncode == 0 and empty.stdout == b"" and b"holds no references" in empty.stderr
    missing = run_cli("bank", "refs", "NOPE", data_dir=cli_bank)
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1 and b"no bank named 'NOPE'" in missing.stderr
    # explain, naming a reference that is not there, points to the command that lists them
    assert b"moderate bank refs" in run_cli("explain", str(photos["moon"]), "nope", data_dir=cli_bank).stderr


def test_keys_trust_takes_a_generated_keys_name(tmp_path):
    data = tmp_path / "data"
    assert run_cli("keys", "generate", "news", "--signer", "Daily News", data_dir=data).returncode == 0
    named = run_cli("keys", "trust", "news", "--name", "Daily News Ltd", data_dir=data)
    assert named.returncode == 0, named.stderr
    (trusted,) = json.loads(run_cli("keys", "list", "--json", data_dir=data).stdout)["trusted"]
    own = json.loads(run_cli("keys", "list", "--json", data_dir=data).stdout)["own"][0]
    assert (trusted["key_id"], trusted["name"]) == (own["key_id"], "Daily News Ltd")
    # README's own example: NAME.pub, run from a folder where no such file is; --name defaults to the signer
    readme = subprocess.run([str(BIN / "moderate"), "keys", "trust", "news.pub"], capture_output=True, cwd=tmp_path,
                            env={**os.environ, "MODERATE_HOME": str(data)}, timeout=120)
    assert readme.returncode == 0 and readme.stdout.decode() == f"trusted {own['key_id']} as Daily News\n"
    unknown = run_cli("keys", "trust", "nobody", "--name", "X", data_dir=data)
    assert unknown.returncode == 1 and unknown.stderr.decode().count("\n") == 1
    assert "neither a public key file nor an own key's name" in unknown.stderr.decode()
    by_file = run_cli("keys", "trust", own["public_key"], data_dir=data)  # a file still needs --name
    assert by_file.returncode == 2 and "--name" in _text(by_file.stderr)


def test_hash_recursive_hashes_the_files_in_folders(tmp_path, photos):
    folder = tmp_path / "pictures"
    (folder / "deep" / "deeper").mkdir(parents=True)
    shutil.copy(photos["coffee"], folder / "coffee.png")
    shutil.copy(photos["rocket"], folder / "deep" / "deeper" / "rocket.png")
    refused = run_cli("hash", str(folder), data_dir=tmp_path / "unused")
    assert refused.returncode == 1 and b"use --recursive" in refused.stderr
    out = run_cli("hash", str(folder), "--recursive", "--json", data_dir=tmp_path / "unused")
    assert out.returncode == 0, out.stderr
    sources = [json.loads(line)["source"] for line in out.stdout.decode().splitlines()]
    assert sorted(sources) == sorted([str(folder / "coffee.png"), str(folder / "deep" / "deeper" / "rocket.png")])
    direct = json.loads(run_cli("hash", str(photos["rocket"]), "--json", data_dir=tmp_path / "unused").stdout)
    (recursed,) = [json.loads(line) for line in out.stdout.decode().splitlines() if "rocket" in line]
    assert recursed["signals"][0]["hash"] == direct["signals"][0]["hash"]
    (tmp_path / "nothing").mkdir()
    none = run_cli("hash", str(tmp_path / "nothing"), "--recursive", data_dir=tmp_path / "unused")
    assert none.returncode == 1 and b"no files to hash" in none.stderr


def test_search_with_no_hit_says_so(cli_bank, photos):
    out = run_cli("search", str(photos["moon"]), "--min-similarity", "0.95", data_dir=cli_bank)
    assert out.returncode == 0 and out.stdout.decode() == "no reference in any bank at similarity >= 0.95\n"
    assert run_cli("search", str(photos["moon"]), "--min-similarity", "0.95", "--json", data_dir=cli_bank).stdout == b""
    found = run_cli("search", str(photos["rocket"]), data_dir=cli_bank)
    assert found.returncode == 0 and "TERROR/rocket" in found.stdout.decode().splitlines()[0]


def test_check_together_text_stays_on_one_line_and_json_names_the_described_image(cli_bank, photos, tmp_path):
    deep = tmp_path / ("a folder with a rather long name " * 3).strip() / "and another long one inside it"
    deep.mkdir(parents=True)
    rocket = deep / "the rocket picture someone posted.png"
    shutil.copy(photos["rocket"], rocket)
    text = run_cli("check", "--together", str(photos["chelsea"]), str(rocket), data_dir=cli_bank, env={"COLUMNS": "40"})
    assert text.returncode == 4
    (line,) = text.stdout.decode().splitlines()
    assert line.startswith("BLOCK") and f"in {rocket}" in line and "#" not in line.split("  ")[1]

    out = run_cli("check", "--together", "--json", str(photos["chelsea"]), str(rocket), str(photos["moon"]), data_dir=cli_bank)
    item = json.loads(out.stdout)
    assert item["decided_by"] == str(rocket)
    assert item["images"] == [{"source": str(photos["chelsea"]), "verdict": "allow"},
                              {"source": str(rocket), "verdict": "block"},
                              {"source": str(photos["moon"]), "verdict": "allow"}]
    alone = json.loads(run_cli("check", "--json", str(rocket), data_dir=cli_bank).stdout)
    assert (item["sha256"], item["width"], item["height"]) == (alone["sha256"], alone["width"], alone["height"])
    clean = json.loads(run_cli("check", "--together", "--json", str(photos["chelsea"]), str(photos["moon"]),
                               data_dir=cli_bank).stdout)
    first = json.loads(run_cli("check", "--json", str(photos["chelsea"]), data_dir=cli_bank).stdout)
    assert clean["decided_by"] == str(photos["chelsea"]) and clean["sha256"] == first["sha256"]


def _colour(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.array(rgb)) <= tolerance).all(axis=-1)


def test_explain_picture_has_a_legend_and_match_lines(cli_bank, photos, tmp_path):
    from moderate.engine.explain import MATCH_LINE, OUTLINE

    rocket = Image.open(photos["rocket"]).convert("RGB")
    crop = tmp_path / "crop.jpg"
    rocket.crop((0, 0, 420, 300)).save(crop, quality=90)
    alone, beside = tmp_path / "alone.png", tmp_path / "beside.png"
    assert run_cli("explain", str(crop), "rocket", "--out", str(alone), data_dir=cli_bank).returncode == 0
    drawn = np.asarray(Image.open(alone).convert("RGB"))
    assert drawn.shape[1] == 420 and drawn.shape[0] > 300 + 3 * 12  # the query, then a legend band below it
    band = drawn[300:]
    assert (band.sum(axis=-1) < 150).sum() > 300  # dark text
    assert _colour(band, OUTLINE).sum() > 50  # the outline's swatch
    assert not _colour(band, MATCH_LINE).any()  # no lines without the reference image

    out = run_cli("explain", str(crop), "rocket", "--out", str(beside), "--reference-image", str(photos["rocket"]),
                  "--json", data_dir=cli_bank)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["out"] == str(beside)
    picture = np.asarray(Image.open(beside).convert("RGB"))
    reference_width = 640 * 300 // 427  # the reference shown at the query's height
    assert abs(picture.shape[1] - (reference_width + 16 + 420)) <= 1
    gutter = picture[:300, reference_width + 2 : reference_width + 14]  # white, except where lines cross it
    assert _colour(gutter, MATCH_LINE).sum() >= 10
    assert _colour(picture[300:], MATCH_LINE).sum() > 50  # and the legend says what they are


def _on_a_terminal(*args: str, data_dir) -> tuple[subprocess.CompletedProcess, bytes]:
    """Run with standard error on a pseudo-terminal (standard output stays a pipe)."""
    master, slave = pty.openpty()
    process = subprocess.Popen([str(BIN / "moderate"), *args], stdout=subprocess.PIPE, stderr=slave,
                               env={**os.environ, "MODERATE_HOME": str(data_dir), "TERM": "xterm"})
    os.close(slave)
    seen: list[bytes] = []

    def drain():  # a pty's buffer is small: read while it runs
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = process.communicate(timeout=300)
    reader.join(10)
    os.close(master)
    return subprocess.CompletedProcess(args, process.returncode, stdout, None), b"".join(seen)


def test_progress_goes_to_a_terminal_on_stderr_and_never_into_json(data_dir, flagged_folder, tmp_path):
    assert run_cli("bank", "create", "TERROR", data_dir=data_dir).returncode == 0
    added, terminal = _on_a_terminal("bank", "add", "TERROR", str(flagged_folder), "--recursive", "--json", data_dir=data_dir)
    assert added.returncode == 0
    assert sorted(json.loads(added.stdout)["added"]) == ["astronaut", "rocket", "set2/coffee", "set2/motorcycle"]
    assert b"hashing references" in terminal

    piped = run_cli("bank", "add", "TERROR", str(flagged_folder), "--recursive", "--id", "again", data_dir=data_dir)
    assert piped.returncode == 0 and piped.stderr == b""  # not a terminal: no bar

    hashes = tmp_path / "hashes.txt"
    hashes.write_bytes(run_cli("bank", "export", "TERROR", "--format", "txt", data_dir=data_dir).stdout)
    assert run_cli("bank", "create", "COPY", data_dir=data_dir).returncode == 0
    imported, terminal = _on_a_terminal("bank", "import", "COPY", str(hashes), data_dir=data_dir)
    assert imported.returncode == 0 and imported.stdout.startswith(b"imported ") and b"importing hashes" in terminal

    library = tmp_path / "library"
    shutil.copytree(flagged_folder, library)
    shutil.copy(library / "rocket.png", library / "rocket-copy.png")
    found, terminal = _on_a_terminal("dedup", str(library), "--json", data_dir=data_dir)
    assert found.returncode == 0 and len([json.loads(line) for line in found.stdout.splitlines()]) == 1
    assert b"hashing photos to find duplicates" in terminal


def test_hash_offers_and_prints_every_listable_signal_of_the_registry(monkeypatch, photos):
    """`hash --signal` comes from the registry: a new listable signal needs no edit of the command."""
    import moderate.engine
    from moderate import Engine
    from moderate.signals import PDQ

    assert moderate.engine.hashed() == ("pdq", "embedding")

    class Negative:  # a listable signal: PDQ of the negative picture
        name, listable = "negative", True

        def compute(self, pixels, dihedral=False):
            return PDQ.compute(255 - pixels, dihedral)

    monkeypatch.setitem(moderate.engine.LISTED, "negative", Negative())
    assert moderate.engine.hashed() == ("pdq", "negative", "embedding")
    engine = Engine(data_dir=photos["moon"].parent / "unused")
    (plain,), (negative,) = engine.hash(photos["moon"]), engine.hash(photos["moon"], signal="negative")
    expected = PDQ.compute(255 - engine.decode(photos["moon"]).frames[0].pixels)[0].hex
    assert negative.pdq[0].hex == expected != plain.pdq[0].hex
