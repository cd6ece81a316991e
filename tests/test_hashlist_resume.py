"""A hash-list import killed part way: what it wrote stays, and running it again finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np

from moderate import Engine

from .conftest import run_cli

LINES = 40_000
# The child imports in chunks of 5,000 rows (one Chroma call each), and says when each is written;
# the parent kills it after the third, so the kill lands between committed chunks.
CHILD = """
import sys
import moderate.banks, moderate.store
from moderate import Engine
moderate.banks.IMPORT_ROWS = 5000
written = moderate.store.Store.add_packs
def add_packs(self, packs):
    written(self, packs)
    print("written", flush=True)
moderate.store.Store.add_packs = add_packs
Engine(data_dir=sys.argv[1]).banks.import_hashes("SPAM", open(sys.argv[2]).read())
print("finished", flush=True)
"""


def test_a_killed_import_keeps_what_it_wrote_and_a_rerun_completes_it(tmp_path):
    codes = np.random.default_rng(13).integers(0, 256, size=(LINES, 32), dtype=np.uint8)
    codes[:, 0] |= 1  # never the all-zero hash, which import refuses
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"pdq {c.tobytes().hex()}\n" for c in codes))
    data_dir = tmp_path / "data"
    assert run_cli("bank", "create", "SPAM", "--action", "review", data_dir=data_dir).returncode == 0
    importing = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(listed)], stdout=subprocess.PIPE,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    said = [importing.stdout.readline().decode().strip() for _ in range(3)]
    importing.send_signal(signal.SIGKILL)
    importing.wait()
    assert said == ["written"] * 3

    kept = Engine(data_dir=data_dir).banks.get("SPAM").hashes
    assert 15_000 <= kept < LINES  # the three chunks it said were written, perhaps one more
    report = Engine(data_dir=data_dir).banks.import_hashes("SPAM", listed.read_text())
    assert (report.already_present, report.imported) == (kept, LINES - kept)
    assert Engine(data_dir=data_dir).banks.get("SPAM").hashes == LINES
    assert Engine(data_dir=data_dir).lookup("pdq", codes[-1].tobytes().hex(), ["SPAM"], max_distance=0)[0].distance == 0
