"""Files the data folder and commands write: replaced whole, never left half-written."""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, content: bytes, mode: int = 0o666, make_folder: bool = False) -> None:
    """Write `content` beside `path` under a temporary name, then rename it over `path`: a kill or a
    full disk leaves the old content or the new, never half. `mode` applies from creation, less the
    umask, as for `open` (0o600 for secrets: never readable by others, not even briefly). With
    `make_folder`, the parent folder is created (files of the data folder); else it must exist
    (a signed image's `--out`). OSError as the file system raises it."""
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    os.replace(tmp, path)
