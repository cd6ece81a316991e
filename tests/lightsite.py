"""`pip install moderate` without some extra, as Python sees it: a folder of symlinks to every entry
of this environment's site-packages except the files of the extra's distributions (found from their
own RECORD, so their dist-info goes too), run with `python -S`. `find_spec` finds nothing, importing
fails, no metadata. A meta-path finder refusing the imports would not do: `find_spec` would then
raise (or find them anyway) instead of answering None.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

# `moderate ARGS...` on the light site; the `moderate` package itself is found as in the parent
# (PYTHONPATH, or the editable install's .pth among the symlinks).
RUN = "import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'moderate'; from moderate.cli import main; main()"


def light_site(folder: Path, distributions: tuple[str, ...]) -> Path:
    """A site-packages folder in `folder` without `distributions`."""
    site = Path(sysconfig.get_paths()["purelib"])
    hidden = {Path(f).parts[0] for name in distributions for f in importlib.metadata.distribution(name).files}
    light = folder / "site-packages"
    light.mkdir()
    for entry in site.iterdir():
        if entry.name not in hidden:
            (light / entry.name).symlink_to(entry)
    return light


def light(site: Path, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
    """`moderate ARGS` on the light site."""
    env = {**os.environ, "MODERATE_HOME": str(data_dir)}
    return subprocess.run([sys.executable, "-S", "-c", RUN, str(site), *args], capture_output=True, env=env,
                          timeout=300)


def missing_on(site: Path, modules: list[str]) -> list[str]:
    """Which of these modules the light site cannot find."""
    probe = ("import importlib.util as u, sys; sys.stdout.write(' '.join(m for m in sys.argv[2:] "
             "if u.find_spec(m) is None))")
    code = f"import site, sys; site.addsitedir(sys.argv[1]); {probe}"
    out = subprocess.run([sys.executable, "-S", "-c", code, str(site), *modules], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def refused(out: subprocess.CompletedProcess, what: bytes, extra: str) -> bool:
    """Exit 1 with one line naming `what` and the extra's install command."""
    lines = out.stderr.splitlines()
    install = f"needs the optional extra: pip install 'moderate[{extra}]'".encode()
    return out.returncode == 1 and len(lines) == 1 and what in lines[0] and install in lines[0]
