"""Inputs the decode fuzzer (fuzz/decode_fuzz.py) flagged, replayed with its budgets.

Each must be refused with a one-line `MediaError` within the `max_seconds` budget (plus slack):
never an exception of another kind, a hang, or a memory blow-up that kills the worker. Every input
is decoded in a child process under a 2 GB address-space limit and a 60 s timeout, so a bomb fails
its test instead of taking the test run (or the machine) down with it. fuzz/README.md says where
each input came from and which moderate code should handle it.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from moderate import Budgets

FINDINGS = Path(__file__).resolve().parents[1] / "fuzz" / "findings"
# max_seconds well under what each finding costs to decode (the WMF replays in 4-13 s depending on
# the machine: with 5 s a fast machine finished it within budget and the test failed on speed)
BUDGETS = Budgets(max_pixels=4_000_000, max_total_pixels=16_000_000, max_frames=50, max_pages=10, max_seconds=1)
SLACK_SECONDS = 3
MEMORY_LIMIT = 2 << 30
TIMEOUT_SECONDS = 60

# Each finding, and what went wrong when it was found.
REFUSED = {
    "pdf-page-fails-to-load.pdf": "PdfiumError 'Failed to load page.' escaped document[number]",
    "pdf-400k-fills.pdf": "12 kB, 400,000 fills on one page: page.render() ran ~25 s before max_seconds was checked",
    "emf-16mp-canvas-40-fills.emf": "1 kB EMF, 3931x3931 canvas: replayed ~30 s before max_pixels refused it",
    "pdf-nested-forms-400k-fills.pdf": "926 B, 10 x form of 10 x form of 4,000 fills: 10 page objects, ~29 s to render",
    "pdf-nested-forms-9m-fills-oom.pdf": "1.1 kB, 30 x 30 x 10,000 fills: loading the page takes > 2 GB, PDFium aborts",
    "wmf-3500-fills.wmf": "49 kB WMF, 3,500 rectangles: ~13 s to replay, no time budget on metafiles",
}
VALID_OR_REFUSED = {
    "pdf-page-0.01pt.pdf": "a 0.01 pt page was decoded into a frame declaring 0x0 pixels",
}

CHILD = """
import json, sys, time
from moderate import Budgets, MediaError
from moderate.media import decode
budgets = Budgets(**json.loads(sys.argv[2]))
data = open(sys.argv[1], "rb").read()
started = time.monotonic()
try:
    media = decode(data, budgets, working_size=256, name="fuzz")
    outcome = {"frames": [[f.width, f.height, *f.pixels.shape] for f in media.frames]}
except MediaError as error:
    outcome = {"code": error.code, "message": str(error)}
outcome["seconds"] = time.monotonic() - started
print(json.dumps(outcome))
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def decode_in_child(name: str) -> dict:
    """Decode a finding in a child process; fail the test on a crash, an abort or a hang."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(FINDINGS / name), json.dumps(asdict(BUDGETS))],
            capture_output=True, text=True, timeout=TIMEOUT_SECONDS, preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: still decoding after {TIMEOUT_SECONDS} s (max_seconds is {BUDGETS.max_seconds})")
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-3:]) or f"killed by signal {-done.returncode}"
        pytest.fail(f"{name}: decode crashed (exit {done.returncode}, 2 GB address-space limit): {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_finding_has_a_case():
    assert sorted(p.name for p in FINDINGS.iterdir()) == sorted({**REFUSED, **VALID_OR_REFUSED})


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_finding_is_refused_with_a_one_line_media_error_in_time(name):
    outcome = decode_in_child(name)
    assert "code" in outcome, f"{name} was decoded, not refused: {outcome}"
    assert outcome["message"].startswith("fuzz: ") and "\n" not in outcome["message"], outcome["message"]
    assert outcome["seconds"] <= BUDGETS.max_seconds + SLACK_SECONDS, \
        f"refused after {outcome['seconds']:.1f} s, over max_seconds={BUDGETS.max_seconds}: {outcome['message']}"


@pytest.mark.parametrize("name", sorted(VALID_OR_REFUSED))
def test_finding_is_refused_or_gives_frames_of_at_least_one_pixel(name):
    outcome = decode_in_child(name)
    if "code" in outcome:
        assert "\n" not in outcome["message"], outcome["message"]
    else:
        assert all(width >= 1 and height >= 1 and h >= 1 and w >= 1 for width, height, h, w, _ in outcome["frames"]), outcome
