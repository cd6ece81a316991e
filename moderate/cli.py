"""The `moderate` command: a thin layer over `moderate.Engine`.

Exit codes (README.md): 0 all allowed, 3 at least one review and no block, 4 at least one block,
1 the command itself failed (bad policy, store unreachable, bad bank arguments), 2 usage.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import List, Optional

import typer

from .errors import ModerateError
from .verdict import EXIT_CODES, Verdict, worst

app = typer.Typer(
    help="Allow, block or review incoming images against banks of flagged references.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
bank_app = typer.Typer(help="Create banks of flagged references and fill them.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")
keys_app = typer.Typer(help="Signing keys and the trust store.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
tokens_app = typer.Typer(help="API tokens for `moderate serve` (only their hashes are stored).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
queue_app = typer.Typer(help="The review queue: review verdicts that moderators work through.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
audit_app = typer.Typer(help="The hash-chained audit log of verdicts and decisions.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
PROVENANCE_EXIT = {"verified": 0, "unsigned": 5, "untrusted": 6, "tampered": 7, "invalid": 8}

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
    from .engine import Engine

    return Engine(ctx.obj["data_dir"], ctx.obj["chroma_url"], policy, ctx.obj["allow_hosts"], enqueue_reviews=enqueue)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


# -- hash and check -----------------------------------------------------------------------------


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
    from .errors import MediaError

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
    from .engine import expand_inputs

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

    from .fetch import is_url

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

    from .media import ALLOWED_FORMATS, sniff

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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
    from .explain import render

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
    from . import dedup as library
    from .banks import image_files

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
        from .signals.embedding import DEFAULT_MODEL

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


# -- banks --------------------------------------------------------------------------------------


@bank_app.command("create")
def bank_create(
    ctx: typer.Context,
    name: str,
    action: str = typer.Option("block", "--action", help="Default action for matches: block or review."),
    description: str = typer.Option("", "--description", help="What the bank holds and why."),
    kind: str = typer.Option("flagged", "--kind", help="flagged, or originals (registered signed originals)."),
    embedding: bool = typer.Option(False, "--embedding", help="Also store embeddings (similar-content matching and search)."),
    model: Optional[str] = typer.Option(None, "--model", help="With --embedding: efficientnet-lite0 (default) or a Hugging Face model folder."),
):
    """Create a bank."""
    from .signals.embedding import DEFAULT_MODEL

    if model and not embedding:
        raise ModerateError("--model names an embedding model: add --embedding")
    bank = _engine(ctx).banks.create(name, action, description, kind, (model or DEFAULT_MODEL) if embedding else None)
    _out(f"created bank {bank.name} (" + (f"action {bank.action}" if bank.kind == "flagged" else bank.kind) + ")")


@bank_app.command("add")
def bank_add(
    ctx: typer.Context,
    bank: str,
    paths: List[Path] = typer.Argument(..., help="Image files or folders."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into folders."),
    reference_id: Optional[str] = typer.Option(None, "--id", help="Reference id; with several files, they are all images of this one reference."),
    region: Optional[str] = typer.Option(None, "--region", help="Only this part of each image is the reference: x,y,w,h in pixels or fractions (0.5,0,0.5,1)."),
    source_url: Optional[str] = typer.Option(None, "--source-url", help="Where the flagged item was found."),
    note: Optional[str] = typer.Option(None, "--note", help="Free text kept with the references."),
    added_by: Optional[str] = typer.Option(None, "--added-by", help="Who adds them (default: your user name)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Add the readable files, report the others."),
    as_json: bool = typer.Option(False, "--json", help="Report as JSON."),
):
    """Hash images and add them as references (the images themselves are not stored)."""
    metadata = {"source_url": source_url, "note": note}
    if added_by:
        metadata["added_by"] = added_by
    report = _engine(ctx).banks.add(bank, paths, recursive=recursive, reference_id=reference_id,
                                    metadata=metadata, skip_invalid=skip_invalid, region=region)
    for problem in report.skipped:
        _err(f"skipped: {problem.message}")
    if as_json:
        _out(json.dumps({"bank": bank, "added": [r.id for r in report.added],
                         "skipped": [p.message for p in report.skipped]}))
    else:
        _out(f"added {len(report.added)} references to {bank}" + (f", skipped {len(report.skipped)}" if report.skipped else ""))


@bank_app.command("reembed")
def bank_reembed(
    ctx: typer.Context,
    bank: str,
    model: str = typer.Option(..., "--model", help="efficientnet-lite0, or a Hugging Face model folder."),
    sources: List[Path] = typer.Option(..., "--from", help="Folders (or files) holding the bank's images again; repeatable."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Re-embed the images found; the others lose their embedding."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Give a bank embeddings of another model (banks keep no images: they are found again by sha256)."""
    report = _engine(ctx).banks.reembed(bank, model, sources, skip_missing=skip_missing)
    if as_json:
        _out(json.dumps({"bank": bank, "model": report.model, "previous": report.previous,
                         "reembedded": report.reembedded, "missing": list(report.missing)}))
    else:
        _out(f"re-embedded {report.reembedded} images of {bank} with {report.model}"
             + (f"; {len(report.missing)} not found" if report.missing else ""))


@bank_app.command("import")
def bank_import(
    ctx: typer.Context,
    bank: str,
    hash_list: str = typer.Argument(..., metavar="FILE", help="Hash list file, or - for standard input."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv (ThreatExchange dataset) or txt ('pdq HEX' lines); default: detected."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Import the valid lines, report the others."),
    note: Optional[str] = typer.Option(None, "--note", help="Free text kept with the imported references."),
):
    """Import hashes without images (industry hash lists)."""
    if hash_list == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, source = Path(hash_list).read_text(encoding="utf-8-sig"), hash_list
        except (OSError, UnicodeDecodeError) as exc:
            raise ModerateError(f"{hash_list}: cannot read hash list: {getattr(exc, 'strerror', None) or exc}") from None
    report = _engine(ctx).banks.import_hashes(bank, text, source=source, fmt=fmt, skip_invalid=skip_invalid,
                                              metadata={"note": note})
    for problem in report.skipped:
        _err(f"skipped {problem.source}: {problem.message}")
    _out(f"imported {report.imported} hashes into {bank}; {report.already_present} already present"
         + (f"; skipped {len(report.skipped)} invalid lines" if report.skipped else ""))


@bank_app.command("export")
def bank_export(
    ctx: typer.Context,
    bank: str,
    fmt: str = typer.Option("csv", "--format", help="csv (with metadata) or txt ('pdq HEX' lines)."),
):
    """Write a bank's hashes to standard output."""
    _engine(ctx).banks.export(bank, sys.stdout, fmt)


@bank_app.command("list")
def bank_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """List banks with their action, state and size."""
    banks = _engine(ctx).banks.list()
    if as_json:
        _out(json.dumps([b.to_dict() for b in banks]))
        return
    for b in banks:
        state = "enabled" if b.enabled else "disabled"
        _out(f"{b.name:<20} {b.action:<7} {state:<9} {b.references:>8} refs {b.hashes:>8} hashes  {b.description}")


@bank_app.command("enable")
def bank_enable(ctx: typer.Context, name: str):
    """Use a bank in checks again."""
    _engine(ctx).banks.enable(name)
    _out(f"enabled bank {name}")


@bank_app.command("disable")
def bank_disable(ctx: typer.Context, name: str):
    """Stop using a bank in checks (its references are kept)."""
    _engine(ctx).banks.disable(name)
    _out(f"disabled bank {name}")


@bank_app.command("remove")
def bank_remove(ctx: typer.Context, bank: str, reference_id: str = typer.Argument(..., metavar="REF_ID")):
    """Remove one reference from a bank."""
    removed = _engine(ctx).banks.remove(bank, reference_id)
    _out(f"removed {reference_id} ({removed} hashes) from {bank}")


@bank_app.command("delete")
def bank_delete(
    ctx: typer.Context,
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
):
    """Delete a bank and all its references."""
    engine = _engine(ctx)
    bank = engine.banks.get(name)
    if not yes:
        if not sys.stdin.isatty():
            raise ModerateError(f"bank {name}: deleting {bank.references} references needs --yes when not on a terminal")
        typer.confirm(f"Delete bank {name} and its {bank.references} references?", abort=True)
    removed = engine.banks.delete(name)
    _out(f"deleted bank {name} ({removed} hashes)")


# -- provenance ---------------------------------------------------------------------------------


@keys_app.command("generate")
def keys_generate(
    ctx: typer.Context,
    name: str,
    signer: Optional[str] = typer.Option(None, "--signer", help="Signer identity written into signatures (default: NAME)."),
    passphrase: bool = typer.Option(False, "--passphrase", help="Encrypt the private key with a passphrase (asked for, or MODERATE_KEY_PASSPHRASE)."),
):
    """Generate an Ed25519 signing key in the data folder (private key file mode 0600)."""
    secret = _passphrase(confirm=True) if passphrase else None
    key = _engine(ctx).keys.generate(name, signer, secret)
    _out(f"generated key {key.name} ({key.key_id}); public key: {key.path.with_suffix('.pub')}")


@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """List own keys and trusted keys."""
    keys = _engine(ctx).keys
    own, trusted = keys.list(), keys.trusted().values()
    if as_json:
        _out(json.dumps({"own": [k.to_dict() for k in own], "trusted": [k.to_dict() for k in trusted]}))
        return
    for k in own:
        _out(f"own     {k.key_id}  {k.name:<16} signer={k.signer}{'  (encrypted)' if k.encrypted else ''}")
    for t in trusted:
        _out(f"trusted {t.key_id}  {t.name}")


@keys_app.command("trust")
def keys_trust(
    ctx: typer.Context,
    public_key_file: Path = typer.Argument(..., metavar="PUBLIC_KEY_FILE"),
    name: str = typer.Option(..., "--name", help="The signer identity this key stands for."),
):
    """Trust a public key: its valid signatures verify as NAME."""
    trusted = _engine(ctx).keys.trust(public_key_file, name)
    _out(f"trusted {trusted.key_id} as {trusted.name}")


@keys_app.command("untrust")
def keys_untrust(ctx: typer.Context, key: str = typer.Argument(..., metavar="KEY_ID_OR_NAME")):
    """Stop trusting a key; its signatures then verify as untrusted."""
    removed = _engine(ctx).keys.untrust(key)
    _out(f"untrusted {removed.key_id} ({removed.name})")


@keys_app.command("trust-c2pa")
def keys_trust_c2pa(ctx: typer.Context, anchors: Path = typer.Argument(..., metavar="ANCHORS_PEM")):
    """Set the C2PA trust anchors (PEM CA certificates) that Content Credentials must chain to."""
    count = _engine(ctx).signatures.credentials.set_trust_anchors(anchors)
    _out(f"C2PA trust anchors set: {count} certificates")


def _passphrase(confirm: bool = False) -> str:
    import os

    secret = os.environ.get("MODERATE_KEY_PASSPHRASE")
    if secret:
        return secret
    if not sys.stdin.isatty():
        raise ModerateError("a passphrase is needed: set MODERATE_KEY_PASSPHRASE when not on a terminal")
    return typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


@app.command()
def sign(
    ctx: typer.Context,
    image: Path,
    key: str = typer.Option(..., "--key", help="Name of an own key (moderate keys list); with --c2pa, a PEM private key file."),
    c2pa: bool = typer.Option(False, "--c2pa", help="Sign C2PA Content Credentials with --cert and --key (no thumbnail)."),
    cert: Optional[Path] = typer.Option(None, "--cert", help="With --c2pa: the PEM certificate chain, signer first."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the signed image (or, with --detached, the signature) here instead of in place."),
    detached: bool = typer.Option(False, "--detached", help="Write IMAGE.sig.json beside the image instead of embedding."),
    digest: str = typer.Option("pixels-v2", "--digest", help="pixels-v2 (pixels plus orientation and colour metadata; survives other metadata edits and lossless re-saves) or jpeg-scan-v2; v1 types bind less."),
    register: Optional[str] = typer.Option(None, "--register", help="Also record the signed original in this bank (--kind originals)."),
    reference_id: Optional[str] = typer.Option(None, "--id", help="Reference id when registering (default: file stem)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Sign an image with an own key (PNG iTXt / JPEG COM, or a detached .sig.json), or with --c2pa."""
    import os

    engine = _engine(ctx)
    if c2pa:
        if cert is None:
            raise ModerateError("--c2pa needs --cert CHAIN.pem and --key KEY.pem")
        signed = engine.signatures.sign_c2pa(image, cert, key, out=out, register=register, reference_id=reference_id)
    else:
        secret = _passphrase() if engine.keys.get(key).encrypted else None
        signed = engine.signatures.sign(image, key, passphrase=secret, out=out, detached=detached, digest_type=digest,
                                        register=register, reference_id=reference_id)
    if as_json:
        _out(json.dumps({"image": os.fspath(signed.path), "signature": os.fspath(signed.signature_path) if signed.signature_path else None,
                         "record": signed.record}))
    else:
        where = signed.signature_path or signed.path
        _out(f"signed {image} as {signed.record['signer']} ({signed.record.get('digest_type', 'c2pa')}) -> {where}")


@app.command()
def verify(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="Image file, or - for standard input."),
    signature: Optional[Path] = typer.Option(None, "--signature", help="A detached signature (default: IMAGE.sig.json if present)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Verify an image's signature: exit 0 verified, 5 unsigned, 6 untrusted, 7 tampered, 8 invalid."""
    result = _engine(ctx).verify(image, signature)
    if as_json:
        _out(json.dumps({"source": "<stdin>" if image == "-" else image, **result.to_dict()}))
    else:
        _out(result.text())
    raise typer.Exit(PROVENANCE_EXIT[result.state])


# -- HTTP API -------------------------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port"),
    policy: Optional[Path] = typer.Option(None, "--policy", "-p", help="Policy file (default: built-in default)."),
    max_body: int = typer.Option(64 * 1024 * 1024, "--max-body", help="Largest request body in bytes (413 above)."),
    rate_limit: int = typer.Option(600, "--rate-limit", help="Requests per minute per token (429 above)."),
):
    """Serve the HTTP API (POST /v1/check, bank routes, /healthz, /openapi.json)."""
    from .server import ServerLimits, serve as run

    run(_engine(ctx, policy), host, port, ServerLimits(max_body, rate_limit))


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: str,
    role: str = typer.Option(..., "--role", help="checker, moderator or admin."),
):
    """Create a token; it is printed once (only its hash is kept)."""
    from .tokens import Tokens

    secret = Tokens(_engine(ctx).data_dir).create(name, role)
    _out(secret)


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """List tokens (names and roles, never secrets)."""
    from .tokens import Tokens

    tokens = Tokens(_engine(ctx).data_dir).list()
    if as_json:
        _out(json.dumps([t.to_dict() for t in tokens]))
    for t in [] if as_json else tokens:
        _out(f"{t.name:<24} {t.role:<10} {t.created_at}")


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, name: str):
    """Revoke a token."""
    from .tokens import Tokens

    Tokens(_engine(ctx).data_dir).revoke(name)
    _out(f"revoked {name}")


# -- review queue and audit ------------------------------------------------------------------------


def _moderator(name: Optional[str]) -> str:
    from .banks import default_actor

    return name or default_actor()


MODERATOR = typer.Option(None, "--moderator", help="Who works the item (default: your user name).")


@queue_app.command("list")
def queue_list(ctx: typer.Context, status: str = typer.Option("open", "--status", help="open, claimed, decided or all."),
               limit: int = typer.Option(50, "--limit"), as_json: bool = typer.Option(False, "--json")):
    """Items by priority (closest evidence first)."""
    items = _engine(ctx).queue.list(None if status == "all" else status, limit)
    for item in items:
        if as_json:
            _out(json.dumps(item.to_dict()))
        else:
            top = (item.verdict.get("reasons") or [{}])[0]
            _out(f"{item.id:>6}  {item.status:<8} p{item.priority:<4} {item.source}  {top.get('rule', '')} "
                 f"{top.get('bank') or ''}/{top.get('reference_id') or ''}")


@queue_app.command("show")
def queue_show(ctx: typer.Context, item_id: int):
    """One item with all its evidence (JSON)."""
    _out(json.dumps(_engine(ctx).queue.get(item_id).to_dict(), indent=1))


@queue_app.command("claim")
def queue_claim(ctx: typer.Context, item_id: Optional[int] = typer.Argument(None, help="Default: the next by priority."),
                moderator: Optional[str] = MODERATOR):
    """Claim an item for deciding; the claim expires after 15 minutes."""
    item = _engine(ctx).queue.claim(_moderator(moderator), item_id)
    _out(f"claimed {item.id} ({item.source}) for {item.claimed_by}")


@queue_app.command("decide")
def queue_decide(
    ctx: typer.Context,
    item_id: int,
    confirm: bool = typer.Option(False, "--confirm", help="The content is what the evidence says."),
    reject: bool = typer.Option(False, "--reject", help="A false positive: goes to the allow-list."),
    note: Optional[str] = typer.Option(None, "--note"),
    bank: Optional[str] = typer.Option(None, "--bank", help="With --confirm: add the item's signals to this bank."),
    moderator: Optional[str] = MODERATOR,
):
    """Decide a claimed item; confirm can feed a bank, reject feeds the allow-list."""
    if confirm == reject:
        raise ModerateError("give exactly one of --confirm or --reject")
    item = _engine(ctx).queue.decide(item_id, _moderator(moderator), "confirm" if confirm else "reject", note, bank)
    _out(f"decided {item.id}: {item.decision} by {item.decided_by}")


@queue_app.command("stats")
def queue_stats(ctx: typer.Context):
    """Counts by state and the age of the oldest waiting item."""
    _out(json.dumps(_engine(ctx).queue.stats()))


@queue_app.command("purge")
def queue_purge(ctx: typer.Context,
                older_than_days: Optional[int] = typer.Option(None, "--older-than-days", min=0,
                                                              help="Default: the retention limit, 30."),
                include_open: bool = typer.Option(False, "--include-open",
                                                  help="Also drop the images of items not decided yet.")):
    """Drop stored images past the retention limit (evidence and decisions stay; undecided items keep theirs)."""
    purged = _engine(ctx).queue.purge(older_than_days, include_open)
    kept = "" if include_open else f"; kept the images of {purged.kept} undecided items (--include-open drops them too)"
    _out(f"purged images of {purged.purged} items{kept}")


@audit_app.command("tail")
def audit_tail(ctx: typer.Context, count: int = typer.Option(20, "-n", help="How many entries.")):
    """The last entries, as JSON lines."""
    for entry in _engine(ctx).audit.tail(count):
        _out(json.dumps(entry.to_dict()))


@audit_app.command("export")
def audit_export(ctx: typer.Context, since: int = typer.Option(0, "--since", help="After this sequence number.")):
    """Every entry as JSON lines."""
    for entry in _engine(ctx).audit.entries(since):
        _out(json.dumps(entry.to_dict()))


@audit_app.command("verify")
def audit_verify(ctx: typer.Context):
    """Check the hash chain: exit 0 intact, 1 with the first broken entry named."""
    checked, problem = _engine(ctx).audit.verify()
    if problem:
        raise ModerateError(f"audit log entry {checked}: {problem}")
    _out(f"audit log intact: {checked} entries")


def main() -> None:
    try:
        app(prog_name="moderate")
    except ModerateError as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    except OSError as exc:  # a data folder that is a file, a full disk, ...
        _err(f"error: {exc.filename or ''}: {exc.strerror or exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
