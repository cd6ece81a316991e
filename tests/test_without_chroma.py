"""`pip install moderate` without the `chroma` extra (the pre-commit hook's environment): a check or
a hook against a data folder whose derived index is current reads that index and never imports
Chroma; whatever must read or write the store (a bank change, a stale index) is refused in one line
naming the install command. The commands run on a light site without chromadb (tests/lightsite.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from moderate import Engine

from . import lightsite
from .lightsite import light


@pytest.fixture(scope="module")
def light_site(tmp_path_factory) -> Path:
    return lightsite.light_site(tmp_path_factory.mktemp("light"), ("chromadb",))


@pytest.fixture
def banked(photos, tmp_path) -> Path:
    """A data folder a team's full install keeps: an image reference and an imported list."""
    engine = Engine(tmp_path / "data")
    engine.banks.create("TERROR")
    engine.banks.add("TERROR", [photos["astronaut"]])
    engine.banks.import_hashes("TERROR", f"md5 {hashlib.md5(photos['coffee'].read_bytes()).hexdigest()}\n")
    return engine.data_dir


def test_the_light_site_lacks_chromadb_and_nothing_else(light_site):
    wanted = ["chromadb", "moderate", "numpy", "cv2", "faiss", "pdqhash", "c2pa", "typer", "fastapi"]
    assert lightsite.missing_on(light_site, wanted) == ["chromadb"]


def test_checks_and_hooks_read_the_saved_index_without_chroma(light_site, banked, photos, edited):
    def run(*args: str):
        return light(light_site, *args, data_dir=banked)

    blocked = run("check", str(edited[0][2]), "--json")  # astronaut, JPEG q30
    assert blocked.returncode == 4, blocked.stderr
    assert {r["bank"] for r in json.loads(blocked.stdout)["reasons"]} == {"TERROR"}
    exact = json.loads(run("check", str(photos["coffee"]), "--json").stdout)
    assert [(r["rule"], r["variant"]) for r in exact["reasons"]] == [("digest.exact", "md5")]
    assert run("check", str(photos["chelsea"])).returncode == 0
    hooked = run("hook", str(photos["astronaut"]), str(photos["chelsea"]))
    assert hooked.returncode != 0 and b"astronaut" in hooked.stdout + hooked.stderr
    assert run("hook", str(photos["chelsea"])).returncode == 0
    assert run("bank", "list").returncode == 0


def test_what_needs_the_store_is_refused_with_the_install_command(light_site, banked, photos, tmp_path):
    def refused(*args: str) -> bool:
        return lightsite.refused(light(light_site, *args, data_dir=banked), b"embedded Chroma in", "chroma")

    listed = tmp_path / "list.txt"
    listed.write_text("md5 " + "ab" * 16 + "\n")
    assert refused("bank", "create", "MORE")
    assert refused("bank", "add", "TERROR", str(photos["rocket"]))
    assert refused("bank", "import", "TERROR", str(listed))
    assert refused("bank", "remove", "TERROR", "astronaut")
    assert Engine(banked).banks.get("TERROR").references == 2  # nothing changed
    (Engine(banked).catalog.dir / "snapshot.json").unlink()  # an index to rebuild from the store
    assert refused("check", str(photos["astronaut"]))
