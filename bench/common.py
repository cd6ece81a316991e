"""Shared pieces of the benchmarks: run sizes, timing helpers, subprocesses and result rows.

Timings use `time.perf_counter`; subprocess timings are wall time from spawn to exit, which is what
a hook or a batch job calling `moderate` waits for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
SEED = 20240517


@dataclass(frozen=True)
class Scale:
    """How big a run is; `FULL` is the real benchmark, `QUICK` a smoke test of the same code."""

    name: str
    photos: int  # how many of the scikit-image photos (of 8)
    rounds: int  # timed passes over the photos per method (the median per image is kept)
    cli_runs: int  # runs of `moderate check DIR`
    lookup_sizes: tuple[int, ...]
    queries: int  # per kind (near-duplicate, random) and index size
    import_hashes: int
    startup_runs: int
    opencv_photos: int  # at most this many Debian opencv-doc photos, when present
    provenance_runs: int  # timed sign/verify calls per method and image (the median is kept)
    load_seconds: int  # duration of the HTTP load on `moderate serve` (bench/load.py)
    robustness_photos: int | None  # photos of the edited-copies corpus (None: all)
    embedding_refs: int  # references in Chroma for the embedding search latency
    dedup_files: int  # files of the dedup benchmark
    scale_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)  # filler references of the scale section's banks
    scale_queries: int = 400  # held-out queries the scale section checks per bank size
    hashlist_sizes: tuple[int, ...] = (1_000_000, 10_000_000)  # random PDQ codes of the hashlists lookups
    hashlist_import: int = 1_000_000  # random PDQ lines the hashlists section imports (and a mixed CSV as long)
    hashlist_import_large: int = 10_000_000  # then this many more, the sustained rate (0: not run)


FULL = Scale("full", photos=8, rounds=3, cli_runs=3, lookup_sizes=(100_000, 1_000_000), queries=250,
             import_hashes=100_000, startup_runs=5, opencv_photos=16,
             provenance_runs=7, load_seconds=60, robustness_photos=None,
             embedding_refs=100_000, dedup_files=10_000)
QUICK = Scale("quick", photos=4, rounds=2, cli_runs=1, lookup_sizes=(20_000, 100_000), queries=100,
              import_hashes=20_000, startup_runs=5, opencv_photos=4,
              provenance_runs=3, load_seconds=15, robustness_photos=12,
              embedding_refs=5_000, dedup_files=500, scale_sizes=(1_000,), scale_queries=132,
              hashlist_sizes=(200_000,), hashlist_import=20_000, hashlist_import_large=0)


@dataclass
class Row:
    """One line of the final table: a measure of moderate, its baseline and their ratio."""

    section: str
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None  # None: no target


@dataclass
class Section:
    """What one benchmark module returns: table rows and the raw numbers for the JSON file."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "data": self.data}


def timed(fn: Callable, *args) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def timed_cpu(fn: Callable, *args) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, all threads, result) of one call.

    CPU time hardly moves with other processes' load, so it backs up a wall time on a busy machine.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def percentiles_ms(seconds: Sequence[float]) -> dict:
    values = np.asarray(seconds) * 1000.0
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(values.mean()), "n": len(values)}


def moderate_script() -> str:
    """The `moderate` console script of the interpreter running the benchmark."""
    beside = Path(sys.executable).parent / "moderate"
    found = str(beside) if beside.exists() else shutil.which("moderate")
    if not found:
        raise SystemExit("bench: the `moderate` command is not installed (pip install -e .)")
    return found


def run(cmd: Sequence[str], ok: Sequence[int] = (0,), env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command without a terminal; (wall seconds, completed process). Fails on an unexpected exit code."""
    start = time.perf_counter()
    done = subprocess.run(list(cmd), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, done


def median_wall(cmd: Sequence[str], runs: int, ok: Sequence[int] = (0,)) -> tuple[float, list[float]]:
    walls = [run(cmd, ok)[0] for _ in range(runs)]
    return float(np.median(walls)), walls


def make_bank(data_dir: Path, bank: str, references: Path) -> None:
    """A bank of the images in `references`, made through the CLI so this process never opens Chroma."""
    cli = moderate_script()
    run([cli, "--data-dir", str(data_dir), "bank", "create", bank, "--action", "block"])
    run([cli, "--data-dir", str(data_dir), "bank", "add", bank, str(references)])


def fmt_rate(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if value < 1000 else f"{value:,.0f} {unit}"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


@contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """`count` processes spinning on a core each, as other workers of a batch would; ended on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, count))]
    try:
        time.sleep(0.3)  # let them get scheduled
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
