"""What every command group shares: the app, its global options, the engine, output and progress.

"""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from enum import Enum, EnumMeta
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer

app = typer.Typer(
    help="Allow, block or review incoming images against banks of flagged references.",
    no_args_is_help=True, pretty_exceptions_enable=False,
)

COLORS = {"allow": "green", "review": "yellow", "block": "bold red"}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _out(f"moderate {version('moderate')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            _out("moderate (not installed)")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", envvar="MODERATE_HOME", metavar="DIR", help="Data folder (default: the XDG data folder).",
    ),
    chroma_url: Optional[str] = typer.Option(
        None, "--chroma-url", envvar="MODERATE_CHROMA_URL", metavar="URL",
        help="A Chroma server, http://HOST:PORT (default: embedded Chroma in the data folder).",
    ),
    allow_hosts: List[str] = typer.Option(
        [], "--allow-host", envvar="MODERATE_ALLOW_HOSTS", metavar="HOST",
        help="A host, IP or CIDR that URL inputs may reach although internal (repeatable).",
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, expose_value=False,
                                 help="Print the version and exit."),
):
    ctx.obj = {"data_dir": data_dir, "chroma_url": chroma_url, "allow_hosts": tuple(allow_hosts)}


class _Deferred(EnumMeta):
    """An Enum whose members are listed only when iterated. Typer iterates a choice type only to
    check a value, print that command's help or complete a word, so the modules defining the
    choices (numpy and the store behind them) are not imported for `moderate --help` or `check`."""

    def __iter__(cls):
        return iter(cls._values())

    def __len__(cls):
        return len(cls._values())


def choices(module: str, name: str, without: tuple[str, ...] = ()) -> type:
    """A choice type whose values are the sequence (or mapping's keys, or what a function returns)
    `name` in `module`, a module of this package, read on first use: the code that acts on the
    values defines them."""

    def values() -> tuple[str, ...]:
        from importlib import import_module

        found = getattr(import_module(module, __package__), name)
        return tuple(v for v in (found() if callable(found) else found) if v not in without)

    class Choice(Enum, metaclass=_Deferred):
        pass

    Choice._values = staticmethod(functools.cache(values))
    return Choice


def command():
    """The click command tree of `app`, with flags shown as taking no value (typer labels them <bool>)."""
    from typer import _click
    from typer.main import get_command

    root = get_command(app)

    def tidy(node, parent):
        ctx = _click.Context(node, parent=parent, info_name=node.name)
        for param in [*node.params, node.get_help_option(ctx)]:
            if param is not None and getattr(param, "is_flag", False):
                param.metavar = ""
        for sub in getattr(node, "commands", {}).values():
            tidy(sub, ctx)

    tidy(root, None)
    return root


def _engine(ctx: typer.Context, policy: Optional[Path] = None, enqueue: bool = False):
    from ..engine import Engine

    return Engine(ctx.obj["data_dir"], ctx.obj["chroma_url"], policy, ctx.obj["allow_hosts"], enqueue_reviews=enqueue)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _console():
    """Rich text on standard output that never wraps: a long path stays on one line."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@contextmanager
def progress(label: str, total: int | None = None, steps: bool = True) -> Iterator[Callable[..., None]]:
    """Yields `advance(done=None, total=None)`: one step more, or `done` of `total` (a total may
    come later, from the work itself). `steps=False`: work without countable steps, timed only.

    The bar goes to standard error and only when that is a terminal, so piped output and --json
    on standard output never see it; lines written to standard output while it runs are printed
    above it when standard output is the same terminal. Without a total it pulses. It is erased
    when the work is done.
    """
    if not sys.stderr.isatty() or (total is not None and total < 2):  # one step needs no bar
        yield lambda done=None, total=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(label), BarColumn(), *([MofNCompleteColumn()] if steps else []), TimeElapsedColumn()]
    bar = Progress(*columns, console=Console(stderr=True, highlight=False), transient=True,
                   redirect_stdout=sys.stdout.isatty())
    task = bar.add_task(label, total=total)

    def advance(done: int | None = None, total: int | None = None) -> None:
        if total is not None:
            bar.update(task, total=total)
        if done is None:
            bar.advance(task)
        else:
            bar.update(task, completed=done)

    with bar:
        yield advance
