"""hash, check, hook, explain, dedup and search: commands that read images."""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ModerateError
from ..verdict import EXIT_CODES, Verdict, worst
from .common import COLORS, _engine, _err, _out, app


@app.command("hash")
def hash_cmd(
    ctx: typer.Context,
    images: List[str] = typer.Argument(..., help="Image files, or - for standard input."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per frame."),
    dihedral: bool = typer.Option(False, "--dihedral", help="Also the 8 rotations and flips."),
    signal: str = typer.Option("pdq", "--signal", help="pdq, or embedding (a deep feature vector)."),
    model: Optional[str] = typer.Option(None, "--model", help="Embedding model: efficientnet-lite0 (default) or a Hugging Face folder."),
):
    """Print the signals of images (no store needed)."""
    engine = _engine(ctx)
    if signal not in ("pdq", "embedding"):
        raise ModerateError(f"--signal must be pdq or embedding, got {signal!r}")
    failed: list[str] = []
    for image, embeddings in _each_input(images if signal == "embedding" else [], lambda i: engine.embed(i, model), failed):
        for frame, embedding in enumerate(embeddings):
            if as_json:
                _out(json.dumps({"source": image, "frame": frame, **embedding.to_dict()}))
            else:
                head = " ".join(f"{v:.4f}" for v in embedding.vector[:4])
                _out(f"embedding {embedding.model.key} dim={embedding.model.dimension} [{head} ...] {image}#{frame}")
    for image, hashed in _each_input(images if signal == "pdq" else [], lambda i: engine.hash(i, dihedral=dihedral), failed):
        for signals in hashed:
            if as_json:
                _out(json.dumps(signals.to_dict()))
            else:
                for value in signals.pdq:
                    variant = "" if value.variant == "original" else f" {value.variant}"
                    _out(f"pdq {value.hex} quality={value.quality}{variant} {signals.source}#{signals.frame}")
    if failed:
        raise typer.Exit(1)


def _each_input(images: list[str], compute, failed: list[str]):
    """(image, compute(image)) for each input; one that cannot be read is reported on stderr and
    added to `failed`, and the others are still done (a batch never stops for one bad input)."""
    from ..errors import MediaError

    for image in images:
        try:
            yield image, compute(image)
        except MediaError as exc:
            _err(f"error: {exc}")
            failed.append(image)


@app.command()
def check(
    ctx: typer.Context,
    inputs: List[str] = typer.Argument(..., help="Image files, folders, http(s) URLs, or - for standard input."),
    policy: Optional[Path] = typer.Option(None, "--policy", "-p", help="Policy file (default: built-in default)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per checked frame (JSON lines)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into folders."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Parallel workers (default: cores)."),
    enqueue: bool = typer.Option(False, "--enqueue", help="Put review verdicts (with the image) on the review queue."),
    together: bool = typer.Option(False, "--together", help="The inputs are one item (a post, an album): one verdict, the strongest evidence wins."),
):
    """Check images: exit 0 allow, 3 review, 4 block."""
    from ..engine import expand_inputs

    engine = _engine(ctx, policy, enqueue)
    sources = expand_inputs(inputs, recursive)
    if not sources:
        raise ModerateError(f"{', '.join(inputs)}: no files to check")
    if together:
        verdict = engine.check_together(sources)
        if as_json:
            _out(verdict.to_json())
        else:
            from rich.console import Console

            _print_verdict(Console(stderr=False), verdict)
        raise typer.Exit(verdict.exit_code)
    raise typer.Exit(EXIT_CODES[_check_and_print(engine, sources, as_json, workers)])


@app.command()
def hook(
    ctx: typer.Context,
    paths: Optional[List[str]] = typer.Argument(None, help="Files to check; none: read paths from standard input."),
    null: bool = typer.Option(False, "--null", "-0", help="Paths on standard input are NUL-separated (find -print0, git ls-files -z)."),
    policy: Optional[Path] = typer.Option(None, "--policy", "-p", help="Policy file (default: built-in default)."),
    allow_review: bool = typer.Option(False, "--allow-review", help="Do not fail on review verdicts (still print them)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per checked frame."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Parallel workers (default: cores)."),
    enqueue: bool = typer.Option(False, "--enqueue", help="Put review verdicts (with the image) on the review queue."),
):
    """For pre-commit and upload pipelines: check the given files; exit codes as in `check`.

    Paths that no longer exist (deleted files) and files that are not images by content (source
    code) are skipped: version control hands a hook every staged path."""
    if not paths:
        text = sys.stdin.read()
        paths = [p for p in (text.split("\0") if null else text.splitlines()) if p.strip()]
    paths = [p for p in paths if _worth_checking(p)]
    if not paths:
        return  # nothing staged that is an image: nothing to check
    overall = _check_and_print(_engine(ctx, policy, enqueue), paths, as_json, workers)
    if overall == "review" and allow_review:
        overall = "allow"
    raise typer.Exit(EXIT_CODES[overall])


def _worth_checking(path: str) -> bool:
    """False for a path that is gone, a folder (a submodule) or a file whose first bytes are no
    format moderate decodes; anything it cannot look into is checked, so the check reports it."""
    import stat

    from ..media.fetch import is_url

    if path == "-" or is_url(path):
        return True
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return False
        if not os.path.isfile(path):
            return True  # a FIFO or device: not opened here, the check says what it is
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return _decodable(head)


def _decodable(head: bytes) -> bool:
    """Whether content starting with `head` is a format moderate decodes, by the same tests its
    decoders use (Pillow's own signature checks for raster formats)."""
    from PIL import Image

    from ..media import ALLOWED_FORMATS, sniff

    if sniff(head) != "image":
        return True  # PDF, WMF/EMF, HEIF
    Image.init()
    return any(accept and accept(head) for name, (_, accept) in Image.OPEN.items() if name in ALLOWED_FORMATS)


def _check_and_print(engine, sources: list[str], as_json: bool, workers: int | None) -> str:
    """Check, print each frame's verdict as it comes, and return the worst verdict."""
    verdicts: list[str] = []
    with _progress(len(sources), as_json) as (console, advance):
        for frame_verdicts in engine.check_many(sources, workers):
            for verdict in frame_verdicts:
                verdicts.append(verdict.verdict)
                if as_json:
                    _out(verdict.to_json())
                else:
                    _print_verdict(console, verdict)
            advance()
    return worst(verdicts)


def _progress(total: int, as_json: bool):
    """A progress bar on a terminal for batches; never mixed into JSON on stdout."""
    from rich.console import Console

    stdout_tty, stderr_tty = sys.stdout.isatty(), sys.stderr.isatty()
    if total < 2 or not (stdout_tty or stderr_tty) or (as_json and not stderr_tty):
        return nullcontext((Console(highlight=False, soft_wrap=True), lambda: None))
    return _Bar(total, to_stdout=stdout_tty and not as_json)


class _Bar:
    def __init__(self, total: int, to_stdout: bool):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=not to_stdout, highlight=False, soft_wrap=True)
        self.progress = Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.task = self.progress.add_task("check", total=total)

    def __enter__(self):
        self.progress.__enter__()
        return self.progress.console, lambda: self.progress.advance(self.task)

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


def _print_verdict(console, verdict: Verdict) -> None:
    from rich.text import Text

    frame = f"#{verdict.frame}" if verdict.frames > 1 else ""
    line = Text(f"{verdict.verdict.upper():<6} ", style=COLORS[verdict.verdict])
    line.append(f"{verdict.source}{frame}")
    if verdict.error:
        line.append(f"  error: {verdict.error}", style="dim")
    for reason in verdict.reasons[:5]:
        if reason.bank:
            variant = f" ({reason.variant})" if reason.variant else ""
            evidence = f"d={reason.distance}" if reason.distance is not None else f"inliers={reason.inliers}"
            where = f" in {reason.source}" if reason.source else ""
            line.append(f"  {reason.rule} {reason.bank}/{reason.reference_id} {evidence}{variant}{where}")
        elif reason.detail and not verdict.error:
            line.append(f"  {reason.rule}: {reason.detail}", style="dim")
    if len(verdict.reasons) > 5:
        line.append(f"  (+{len(verdict.reasons) - 5} more; --json for all)", style="dim")
    console.print(line)


@app.command()
def explain(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="Image file, URL, or - for standard input."),
    reference_id: str = typer.Argument(..., metavar="REFERENCE_ID"),
    bank: Optional[str] = typer.Option(None, "--bank", "-b", help="The bank holding the reference (needed when several do)."),
    policy: Optional[Path] = typer.Option(None, "--policy", "-p", help="Policy file (default: built-in default)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write a PNG: the query with the matched region outlined."),
    reference_image: Optional[str] = typer.Option(None, "--reference-image", help="The flagged image, if you have it: drawn beside the query in --out."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Why an image does (or does not) match a reference: distance per signal, inliers, polygon (exit 0 either way)."""
    from ..engine.explain import render

    engine = _engine(ctx, policy)
    source = sys.stdin.buffer.read() if query == "-" else query  # read once: --out decodes it again
    explanation = engine.explain(source, reference_id, bank)
    if out is not None:
        render(explanation, source, out, reference_image, engine)
    if as_json:
        _out(json.dumps({**explanation.to_dict(), "out": str(out) if out else None}))
    else:
        for line in explanation.lines():
            _out(line)
        if out is not None:
            _out(f"wrote {out}")


@app.command()
def dedup(
    ctx: typer.Context,
    folders: List[Path] = typer.Argument(..., help="Folders (or files) of the photo library."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into sub-folders."),
    signal: str = typer.Option("pdq", "--signal", help="pdq, embedding or both."),
    threshold: int = typer.Option(31, "--threshold", min=0, max=128, help="PDQ: largest Hamming distance (of 256) that is a duplicate."),
    min_similarity: float = typer.Option(0.95, "--min-similarity", min=0.5, max=1.0, help="Embedding: smallest cosine that is a duplicate."),
    prefer: str = typer.Option("resolution,size,oldest", "--prefer", help="Keeper order: resolution, size, oldest, newest (comma-separated)."),
    move_to: Optional[Path] = typer.Option(None, "--move-to", help="Move duplicates here (keepers stay)."),
    delete: bool = typer.Option(False, "--delete", help="Delete duplicates (keepers stay); asks first unless --yes."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before deleting."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per group."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV rows: group, role, path, signal, distance, width, height, bytes."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Processes reading files (default: cores)."),
):
    """Group exact and near-duplicate photos and pick a keeper in each; only reports unless told to act."""
    from ..banks import image_files
    from ..engine import dedup as library

    order = tuple(p.strip() for p in prefer.split(",") if p.strip())
    if not order or any(p not in library.PREFERENCES for p in order):
        raise ModerateError(f"--prefer {prefer!r}: use resolution, size, oldest or newest, comma-separated")
    if signal not in ("pdq", "embedding", "both"):
        raise ModerateError(f"--signal must be pdq, embedding or both, got {signal!r}")
    if move_to is not None and delete:
        raise ModerateError("--move-to and --delete: choose one")
    engine = _engine(ctx)
    unlisted: list = []
    files = [path for path, _ in image_files(folders, recursive, problems=unlisted)]
    for problem in unlisted:
        _err(f"skipped: {problem}")
    model = None
    if signal in ("embedding", "both"):
        from ..signals.embedding import DEFAULT_MODEL

        model = engine.policy.embedding.model or DEFAULT_MODEL
    with _progress(len(files), as_json or as_csv) as (_, advance):
        found = library.scan(files, engine.policy.limits, model, advance, workers or os.cpu_count() or 1)
    for path, why in found.skipped:
        _err(f"skipped: {why}")
    groups = library.group(found, threshold if signal in ("pdq", "both") else None,
                           min_similarity if signal in ("embedding", "both") else None, order)
    _print_groups(groups, as_json, as_csv)
    if delete and groups:
        count = sum(len(g.duplicates) for g in groups)
        if not yes and not typer.confirm(f"delete {count} duplicates (keeping {len(groups)} keepers)?", err=True):
            raise typer.Exit(1)
        _err(f"deleted {len(library.delete(groups))} files")
    elif move_to is not None and groups:
        root = folders[0] if len(folders) == 1 and folders[0].is_dir() else None
        _err(f"moved {len(library.move(groups, move_to, root))} files to {move_to}")


def _print_groups(groups, as_json: bool, as_csv: bool) -> None:
    if as_csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["group", "role", "path", "signal", "distance", "width", "height", "bytes"])
        for n, g in enumerate(groups):
            k = g.keeper
            writer.writerow([n, "keep", k.path, "", "", k.width, k.height, k.bytes])
            for d in g.duplicates:
                writer.writerow([n, "duplicate", d.item.path, d.signal, d.distance, d.item.width, d.item.height, d.item.bytes])
        return
    for n, g in enumerate(groups):
        if as_json:
            _out(json.dumps({"group": n, **g.to_dict()}))
        else:
            _out(f"keep {g.keeper.path} ({g.keeper.width}x{g.keeper.height}, {g.keeper.bytes} bytes)")
            for d in g.duplicates:
                _out(f"  dup {d.item.path} ({d.signal} d={d.distance}, {d.item.width}x{d.item.height})")
    if not as_json:
        _err(f"{len(groups)} groups, {sum(len(g.duplicates) for g in groups)} duplicates")


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Image file, URL, or - for standard input."),
    bank: Optional[List[str]] = typer.Option(None, "--bank", "-b", help="Only these banks (repeatable)."),
    top: int = typer.Option(10, "--top", min=1, help="How many results."),
    signal: str = typer.Option("auto", "--signal", help="pdq, embedding or auto (what the banks hold)."),
    min_similarity: float = typer.Option(0.75, "--min-similarity", min=0.0, max=1.0, help="PDQ: 1 - distance/256; embedding: cosine."),
    higher_res: bool = typer.Option(False, "--higher-res", help="Only references larger than the query."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Reverse image search: the source, near duplicates, a higher-resolution original, who signed it."""
    if signal not in ("pdq", "embedding", "auto"):
        raise ModerateError(f"--signal must be pdq, embedding or auto, got {signal!r}")
    hits = _engine(ctx).search(image, bank or None, top, min_similarity, higher_res, signal)
    for hit in hits:
        if as_json:
            _out(json.dumps(hit.to_dict()))
        else:
            size = f"{hit.width}x{hit.height}" if hit.width else "?"
            who = f"  signed by {hit.signer}{'' if hit.signer_trusted else ' (untrusted)'}" if hit.signer else ""
            where = hit.metadata.get("source_url") or hit.metadata.get("filename") or ""
            _out(f"{hit.similarity:.3f}  {hit.bank}/{hit.reference_id}  {hit.signal} d={hit.distance}  {size}  {where}{who}")
