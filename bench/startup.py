"""Start-up cost of the CLI, which hooks and per-upload scripts pay on every call.

- `moderate --help` wall time (median of several subprocess runs) against `python -c pass`, the
  interpreter's own start-up: the difference is what importing the CLI costs.
- `moderate check ONE.jpg --json` against an embedded bank of a few references (PDQ only), median
  of several runs after a first warm-up run.
- Which heavy modules those commands import, from `python -X importtime`: none of torch,
  transformers, onnxruntime or chromadb should be imported by a check, since the persisted index
  snapshot is trusted without opening Chroma while the embedded database files are unchanged.
  The very first check after `bank add` is reported separately (informational).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from . import photos
from .common import Row, Scale, Section, fmt_ms, make_bank, median_wall, moderate_script, run

HEAVY = ("torch", "transformers", "onnxruntime", "chromadb")
NOTED = HEAVY + ("faiss", "pdqhash", "numpy", "PIL", "yaml", "rich", "typer", "pydantic", "cryptography")
BANK = "STARTUP"
BLOCK = 4  # exit code of a check that blocks


def run_section(scale: Scale) -> Section:
    cli = moderate_script()
    help_s, help_walls = median_wall([cli, "--help"], scale.startup_runs)
    python_s, python_walls = median_wall([sys.executable, "-c", "pass"], scale.startup_runs)
    with tempfile.TemporaryDirectory(prefix="moderate-bench-") as tmp:
        data_dir, image = _bank_and_upload(Path(tmp))
        check = [cli, "--data-dir", str(data_dir), "check", str(image), "--json"]
        first_check = imported_modules(check, ok=(BLOCK,))
        check_s, check_walls = median_wall(check, scale.startup_runs, ok=(BLOCK,))
        steady_check = imported_modules(check, ok=(BLOCK,))
    help_modules = imported_modules([cli, "--help"])
    data = {
        "help_s": help_s, "help_walls_s": help_walls, "python_s": python_s, "python_walls_s": python_walls,
        "check_s": check_s, "check_walls_s": check_walls,
        "modules": {"help": help_modules, "first_check_after_bank_add": first_check, "check": steady_check},
        "heavy_in_check": [m for m in HEAVY if steady_check[m]],
        "heavy_in_first_check": [m for m in HEAVY if first_check[m]],
    }
    return Section("startup", _rows(data), data)


def _bank_and_upload(folder: Path) -> tuple[Path, Path]:
    """A bank of the flagged originals and a 2048 px JPEG copy of one of them, which the check blocks."""
    flagged = folder / "flagged"
    flagged.mkdir()
    for name in photos.FLAGGED:
        Image.fromarray(photos.PHOTOS[name]()).save(flagged / f"{name}.png")
    upload = folder / "upload.jpg"
    with Image.open(flagged / f"{photos.FLAGGED[0]}.png") as image:
        photos.resized(image, "2048px").save(upload, quality=90)
    make_bank(folder / "data", BANK, flagged)
    return folder / "data", upload


def imported_modules(cmd: list[str], ok=(0,)) -> dict[str, bool]:
    """Which top-level packages of NOTED a command imports, per `python -X importtime`."""
    script, *args = cmd
    _, done = run([sys.executable, "-X", "importtime", script, *args], ok=ok)
    top = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            top.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return {name: name in top for name in NOTED}


def _rows(data: dict) -> list[Row]:
    heavy, first_heavy = data["heavy_in_check"], data["heavy_in_first_check"]
    help_heavy = [m for m in HEAVY if data["modules"]["help"][m]]
    return [
        Row("startup", "moderate --help (median wall)", fmt_ms(data["help_s"] * 1000),
            f"python -c pass {fmt_ms(data['python_s'] * 1000)}", _over(data["help_s"], data["python_s"]),
            "no heavy imports", not help_heavy),
        Row("startup", "check 1 JPEG, PDQ, embedded bank", fmt_ms(data["check_s"] * 1000),
            f"python -c pass {fmt_ms(data['python_s'] * 1000)}", _over(data["check_s"], data["python_s"])),
        Row("startup", "  heavy modules imported by check", ", ".join(heavy) or "none",
            f"of {', '.join(HEAVY)}", "", "none", not heavy),
        Row("startup", "  ... by first check after bank add", ", ".join(first_heavy) or "none",
            "(informational)"),
    ]


def _over(seconds: float, baseline: float) -> str:
    return f"+{(seconds - baseline) * 1000:.0f} ms"
