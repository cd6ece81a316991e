"""The `moderate` command: a thin layer over `moderate.Engine`, one module per command group.

Exit codes (README.md): 0 all allowed, 3 at least one review and no block, 4 at least one block,
1 the command itself failed (bad policy, store unreachable, bad bank arguments), 2 usage.
"""

from __future__ import annotations

import sys

from ..errors import ModerateError
from . import banks, check, exchange, provenance, queue, service  # noqa: F401 (each registers its commands)
from .common import _err, app, command

__all__ = ["app", "main"]


def main() -> None:
    try:
        command()(prog_name="moderate")
    except ModerateError as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    except OSError as exc:  # a data folder that is a file, a full disk, ...
        _err(f"error: {exc.filename or ''}: {exc.strerror or exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
