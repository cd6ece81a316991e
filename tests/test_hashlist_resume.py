"""A hash-list import killed part way: what it wrote stays, and running it again finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np

from moderate import Engine

from .conftest import BIN, run_cli

LINES = 40_000  # several Chroma pages (5000 records each), so a kill lands between pages


def test_a_killed_import_keeps_what_it_wrote_and_a_rerun_completes_it(tmp_path):
    codes = np.random.default_rng(13).integers(0, 256, size=(LINES, 32), dtype=np.uint8)
    codes[:, 0] |= 1  # never the all-zero hash, which import refuses
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"pdq {c.tobytes().hex()}\n" for c in codes))
    data_dir = tmp_path / "data"
    assert run_cli("bank", "create", "SPAM", "--action", "review", data_dir=data_dir).returncode == 0
    env = {**os.environ, "MODERATE_HOME": str(data_dir)}
    importing = subprocess.Popen([str(BIN / "moderate"), "bank", "import", "SPAM", str(listed)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)  # on a 2-core box this lands after about 3 of its 8 pages
    importing.send_signal(signal.SIGKILL)
    importing.wait()

    kept = Engine(data_dir=data_dir).banks.get("SPAM").hashes
    report = Engine(data_dir=data_dir).banks.import_hashes("SPAM", listed.read_text())
    assert (report.already_present, report.imported) == (kept, LINES - kept)
    assert Engine(data_dir=data_dir).banks.get("SPAM").hashes == LINES
