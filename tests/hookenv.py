"""This repository's pre-commit hook installed by the real pre-commit framework, and measured.

A temporary git repository's `.pre-commit-config.yaml` points at this checkout (`repo: PATH`,
`rev: HEAD`), and `pre-commit install-hooks` builds the hook's environment as it would for any
user: a fresh virtualenv and `pip install .` from the package index. Only committed work is
measured (pre-commit clones the commit). Used by tests/test_hook_install.py and `bench` (`hook`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 600  # issue #13: what a hook may cost every repository that uses it
HEAVY = ("torch", "transformers", "nvidia")  # what the light core must never pull


@dataclass(frozen=True)
class HookInstall:
    seconds: float  # wall time of `pre-commit install-hooks`
    megabytes: float  # disk usage of the environment it made (as `du`)
    largest: tuple[tuple[str, float], ...]  # (site-packages entry, MB), largest first
    heavy: tuple[str, ...]  # site-packages entries named after a HEAVY package


def unavailable() -> str | None:
    """Why the hook cannot be installed here (no git checkout, package index unreachable), or None.
    The index is probed by downloading one tiny package with a short timeout."""
    if not (ROOT / ".git").exists():
        return f"{ROOT} is not a git checkout (pre-commit clones a commit)"
    with tempfile.TemporaryDirectory() as folder:
        try:
            probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                                    "--timeout", "5", "--retries", "0", "--dest", folder, "six"],
                                   capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return "the package index did not answer within 60 s"
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["no output"]
        return f"the package index is unreachable (pip download: {lines[-1]})"
    return None


def install_hook(home: Path) -> HookInstall:
    """Install the hook of this checkout's HEAD with pre-commit, its cache in `home`."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    repo = home / "repo"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    config = {"repos": [{"repo": str(ROOT), "rev": sha, "hooks": [{"id": hook["id"]}]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PRE_COMMIT_HOME": str(home / "cache")}
    env.pop("PYTHONPATH", None)  # the hook's environment must stand on its own
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "pre-commit"), "install-hooks"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"pre-commit install-hooks exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
    (environment,) = (home / "cache").glob("repo*/py_env-*")
    (site,) = environment.glob("lib/python*/site-packages")
    entries = sorted(((entry.name, _megabytes(entry)) for entry in site.iterdir()), key=lambda e: -e[1])
    heavy = tuple(name for name, _ in entries if name.lower().startswith(HEAVY))
    return HookInstall(seconds, _megabytes(environment), tuple(entries[:10]), heavy)


def _megabytes(path: Path) -> float:
    """Disk usage in MB, as `du` counts it (allocated blocks, links not followed)."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_blocks * 512 / 1e6
    total = 0
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return (total + path.lstat().st_blocks * 512) / 1e6
