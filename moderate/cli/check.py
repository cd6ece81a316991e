"""hash, check, hook, explain, dedup and search: commands that read images."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ModerateError
from ..verdict import EXIT_CODES, Verdict, worst
from .common import COLORS, _console, _engine, _err, _out, app, choices, progress

HashSignal = choices("..engine", "hashed")
SearchSignal = choices("..engine.search", "choices")
DedupSignal = choices("..engine.dedup", "SIGNALS")
POLICY = typer.Option(None, "--policy", "-p", metavar="FILE", help="Policy file (default: built-in default).")
WORKERS = typer.Option(None, "--workers", "-w", min=1, metavar="N", help="Parallel workers (default: cores).")
ENQUEUE = typer.Option(False, "--enqueue", help="Put review verdicts (with the image) on the review queue.")


@app.command("hash")
def hash_cmd(
    ctx: typer.Context,
    images: List[str] = typer.Argument(..., metavar="IMAGE", help="Image files (folders with --recursive), or - for standard input."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per frame."),
    dihedral: bool = typer.Option(False, "--dihedral", help="Also the 8 rotations and flips."),
    signal: HashSignal = typer.Option("pdq", "--signal", help="pdq, or embedding (a deep feature vector)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL", help="Embedding model: efficientnet-lite0 (default) or a Hugging Face folder."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Hash every file in the folders named, at all levels."),
):
    """Print the signals of images (no store needed)."""
    from ..engine import expand_inputs
    from ..media import describe

    engine = _engine(ctx)
    sources = expand_inputs(images, recursive=True) if recursive else images
    if not sources:
        raise ModerateError(f"{', '.join(images)}: no files to hash")
    failed: list[str] = []
    from ..signals import EMBEDDING

    embedded = signal == EMBEDDING.name
    for image, embeddings in _each_input(sources if embedded else [], lambda i: engine.embed(i, model), failed):
        for frame, embedding in enumerate(embeddings):
            if as_json:
                _out(json.dumps({"source": describe(image), "frame": frame, **embedding.to_dict()}))
            else:
                head = " ".join(f"{v:.4f}" for v in embedding.vector[:4])
                _out(f"embedding {embedding.model.key} dim={embedding.model.dimension} [{head} ...] {describe(image)}#{frame}")
    listed = [] if embedded else sources
    for image, hashed in _each_input(listed, lambda i: engine.hash(i, dihedral=dihedral, signal=signal), failed):
        for signals in hashed:
            if as_json:
                _out(json.dumps(signals.to_dict()))
            else:
                for value in signals.pdq:
                    variant = "" if value.variant == "original" else f" {value.variant}"
                    _out(f"{signal} {value.hex} quality={value.quality}{variant} {signals.source}#{signals.frame}")
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
    inputs: List[str] = typer.Argument(..., metavar="INPUT", help="Image files, folders, http(s) URLs, or - for standard input."),
    policy: Optional[Path] = POLICY,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per checked frame (JSON lines)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into folders."),
    workers: Optional[int] = WORKERS,
    enqueue: bool = ENQUEUE,
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
            _out(json.dumps({**verdict.to_dict(), **_images_of(engine, sources, verdict)}, separators=(",", ":")))
        else:
            _print_verdict(_console(), verdict, frame=False)  # frames of several images: no one frame number
        raise typer.Exit(verdict.exit_code)
    raise typer.Exit(EXIT_CODES[_check_and_print(engine, sources, as_json, workers)])


def _images_of(engine, sources: list, verdict: Verdict) -> dict:
    """What `check --together --json` adds: each image's own verdict (`images`), and `decided_by`,
    the image that `sha256`, `width`, `height` and `frame` describe: the first whose own verdict is
    the item's (the engine takes the deciding image's facts). An image's own verdict is the policy's
    verdict on the reasons that name it."""
    from ..media import describe

    names = [describe(source) for source in sources]
    own = [engine.policy.verdict_for([r for r in verdict.reasons if r.source == name]) for name in names]
    decided_by = next((name for name, v in zip(names, own) if v == verdict.verdict), names[0])
    return {"decided_by": decided_by, "images": [{"source": n, "verdict": v} for n, v in zip(names, own)]}


@app.command()
def hook(
    ctx: typer.Context,
    paths: Optional[List[str]] = typer.Argument(None, metavar="PATH", help="Files to check; none: read paths from standard input."),
    null: bool = typer.Option(False, "--null", "-0", help="Paths on standard input are NUL-separated (find -print0, git ls-files -z)."),
    policy: Optional[Path] = POLICY,
    allow_review: bool = typer.Option(False, "--allow-review", help="Do not fail on review verdicts (still print them)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per checked frame."),
    workers: Optional[int] = WORKERS,
    enqueue: bool = ENQUEUE,
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
    console = _console()
    with progress("checking", len(sources)) as advance:
        for frame_verdicts in engine.check_many(sources, workers):
            for verdict in frame_verdicts:
                verdicts.append(verdict.verdict)
                if as_json:
                    _out(verdict.to_json())
                else:
                    _print_verdict(console, verdict)
            advance()
    return worst(verdicts)


def _print_verdict(console, verdict: Verdict, frame: bool = True) -> None:
    from rich.text import Text

    frame = f"#{verdict.frame}" if frame and verdict.frames > 1 else ""
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
    query: str = typer.Argument(..., metavar="QUERY", help="Image file, URL, or - for standard input."),
    reference_id: str = typer.Argument(..., metavar="REFERENCE_ID", help="The reference to compare with (see `moderate bank refs BANK`)."),
    bank: Optional[str] = typer.Option(None, "--bank", "-b", metavar="BANK", help="The bank holding the reference (needed when several do)."),
    policy: Optional[Path] = POLICY,
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE", help="Write a PNG: the query with the matched region outlined and a legend."),
    reference_image: Optional[str] = typer.Option(None, "--reference-image", metavar="IMAGE", help="The flagged image, if you have it: drawn beside the query in --out, with lines between matched corners."),
    as_json: bool = typer.Option(False, "--json", help="The explanation as one JSON object."),
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
    folders: List[Path] = typer.Argument(..., metavar="PATH", help="Folders (or files) of the photo library."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Descend into sub-folders."),
    signal: DedupSignal = typer.Option("pdq", "--signal", help="What ties copies: PDQ distance, embedding similarity, or either."),
    threshold: int = typer.Option(31, "--threshold", min=0, max=128, metavar="BITS", help="PDQ: largest Hamming distance (of 256) that is a duplicate."),
    min_similarity: float = typer.Option(0.95, "--min-similarity", min=0.5, max=1.0, metavar="COSINE", help="Embedding: smallest cosine that is a duplicate."),
    prefer: str = typer.Option("resolution,size,oldest", "--prefer", metavar="ORDER", show_default=False,
                               help="Keeper order: some of resolution, size, oldest, newest, joined by commas (default: resolution, size, oldest)."),
    move_to: Optional[Path] = typer.Option(None, "--move-to", metavar="DIR", help="Move duplicates here (keepers stay)."),
    delete: bool = typer.Option(False, "--delete", help="Delete duplicates (keepers stay); asks first unless --yes."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before deleting."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per group."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV rows: group, role, path, signal, distance, width, height, bytes."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="FILE", help="Also write a self-contained HTML page: each keeper beside its duplicates, as thumbnails."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, metavar="N", help="Processes reading files (default: cores)."),
):
    """Group exact and near-duplicate photos and pick a keeper in each; only reports unless told to act."""
    from ..banks import image_files
    from ..engine import dedup as library

    order = tuple(p.strip() for p in prefer.split(",") if p.strip())
    if not order or any(p not in library.PREFERENCES for p in order):
        raise ModerateError(f"--prefer {prefer!r}: use {', '.join(library.PREFERENCES)}, comma-separated")
    if move_to is not None and delete:
        raise ModerateError("--move-to and --delete: choose one")
    engine = _engine(ctx)
    model = None
    if signal in ("embedding", "both"):
        from ..signals.embedding import DEFAULT_MODEL, require

        model = engine.policy.embedding.model or DEFAULT_MODEL
        require(model)  # refused before a 100k-photo library is listed
    unlisted: list = []
    files = [path for path, _ in image_files(folders, recursive, problems=unlisted)]
    for problem in unlisted:
        _err(f"skipped: {problem}")
    with progress("hashing photos to find duplicates", len(files)) as advance:
        found = library.scan(files, engine.policy.limits, model, advance, workers or os.cpu_count() or 1)
    for path, why in found.skipped:
        _err(f"skipped: {why}")
    groups = library.group(found, threshold if signal in ("pdq", "both") else None,
                           min_similarity if signal in ("embedding", "both") else None, order)
    _print_groups(groups, as_json, as_csv)
    if html is not None:  # before moving or deleting: the page shows the files as they were found
        with progress("drawing the report", sum(1 + len(g.duplicates) for g in groups)) as advance:
            library.html_report(groups, html, engine.policy.limits, advance)
        _err(f"wrote {html}")
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
    image: str = typer.Argument(..., metavar="IMAGE", help="Image file, URL, or - for standard input."),
    bank: Optional[List[str]] = typer.Option(None, "--bank", "-b", metavar="BANK", help="Only these banks (repeatable)."),
    top: int = typer.Option(10, "--top", min=1, help="How many results."),
    signal: SearchSignal = typer.Option("auto", "--signal", help="One signal, or auto: every signal the banks hold, on one similarity scale."),
    min_similarity: float = typer.Option(0.75, "--min-similarity", min=0.0, max=1.0, help="PDQ: 1 - distance/256; embedding: cosine."),
    higher_res: bool = typer.Option(False, "--higher-res", help="Only references larger than the query."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per hit (none when nothing is found)."),
):
    """Reverse image search: the source, near duplicates, a higher-resolution original, who signed it."""
    hits = _engine(ctx).search(image, bank or None, top, min_similarity, higher_res, signal)
    if not hits and not as_json:
        where = f"banks {', '.join(bank)}" if bank else "any bank"
        larger = " larger than the query" if higher_res else ""
        _out(f"no reference{larger} in {where} at similarity >= {min_similarity:g}")
    for hit in hits:
        if as_json:
            _out(json.dumps(hit.to_dict()))
        else:
            size = f"{hit.width}x{hit.height}" if hit.width else "?"
            who = f"  signed by {hit.signer}{'' if hit.signer_trusted else ' (untrusted)'}" if hit.signer else ""
            where = hit.metadata.get("source_url") or hit.metadata.get("filename") or ""
            _out(f"{hit.similarity:.3f}  {hit.bank}/{hit.reference_id}  {hit.signal} d={hit.distance}  {size}  {where}{who}")
