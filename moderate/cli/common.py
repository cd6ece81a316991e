"""What every command group shares: the app, its global options, the engine and output.

"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    help="Allow, block or review incoming images against banks of flagged references.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

COLORS = {"allow": "green", "review": "yellow", "block": "bold red"}


@app.callback()
def _global(
    ctx: typer.Context,
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", envvar="MODERATE_HOME", help="Data folder (default: the XDG data folder).",
    ),
    chroma_url: Optional[str] = typer.Option(
        None, "--chroma-url", envvar="MODERATE_CHROMA_URL",
        help="A Chroma server, http://HOST:PORT (default: embedded Chroma in the data folder).",
    ),
    allow_hosts: List[str] = typer.Option(
        [], "--allow-host", envvar="MODERATE_ALLOW_HOSTS",
        help="A host, IP or CIDR that URL inputs may reach although internal (repeatable).",
    ),
):
    ctx.obj = {"data_dir": data_dir, "chroma_url": chroma_url, "allow_hosts": tuple(allow_hosts)}


def _engine(ctx: typer.Context, policy: Optional[Path] = None, enqueue: bool = False):
    from ..engine import Engine

    return Engine(ctx.obj["data_dir"], ctx.obj["chroma_url"], policy, ctx.obj["allow_hosts"], enqueue_reviews=enqueue)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
