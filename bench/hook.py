"""What the pre-commit hook costs a repository that uses it: the environment `pre-commit
install-hooks` builds for it from the package index (installed MB) and how long that takes.

The same installation as tests/test_hook_install.py (`tests.hookenv`): this checkout's HEAD, the
real pre-commit framework, a fresh cache. Needs the package index; without it the row says why.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.hookenv import LIMIT_MB, install_hook, unavailable  # the repository root is on sys.path under `python -m bench`

from .common import Row, Scale, Section


def run_section(scale: Scale) -> Section:
    why = unavailable()
    if why:
        return Section("hook", [Row("hook", "pre-commit hook environment", "skipped", why)], {"skipped": why})
    with tempfile.TemporaryDirectory(prefix="moderate-bench-hook-") as tmp:
        installed = install_hook(Path(tmp))
    data = {"installed_mb": installed.megabytes, "install_s": installed.seconds, "largest_mb": dict(installed.largest),
            "heavy": list(installed.heavy)}
    rows = [
        Row("hook", "pre-commit hook environment (installed)", f"{installed.megabytes:.0f} MB", "",
            "", f"< {LIMIT_MB} MB, no torch", installed.megabytes < LIMIT_MB and not installed.heavy),
        Row("hook", "  pre-commit install-hooks (wall)", f"{installed.seconds:.0f} s", "(pip's cache as found)"),
    ]
    return Section("hook", rows, data)
