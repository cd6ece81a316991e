"""`moderate bank`: create banks of flagged references and fill them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ModerateError
from .common import _engine, _err, _out, app, choices, progress

bank_app = typer.Typer(help="Create banks of flagged references and fill them.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")

Action = choices("..banks", "ACTIONS")
Kind = choices("..banks", "KINDS")
HashListFormat = choices("..banks.hashlist", "FORMATS")
BANK = typer.Argument(..., metavar="BANK", help="The bank's name (see `moderate bank list`).")
NAME = typer.Argument(..., metavar="NAME", help="The bank's name (see `moderate bank list`).")


@bank_app.command("create")
def bank_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="1-64 letters, digits, '_', '-' or '.'."),
    action: Action = typer.Option("block", "--action", help="Default action for matches."),
    description: str = typer.Option("", "--description", help="What the bank holds and why."),
    kind: Kind = typer.Option("flagged", "--kind", help="flagged; originals (registered signed originals); allowlist (known false positives)."),
    embedding: bool = typer.Option(False, "--embedding", help="Also store embeddings (similar-content matching and search)."),
    thumbnails: bool = typer.Option(False, "--keep-thumbnails", help="Keep a 160 px thumbnail of each reference, shown to moderators beside a match. Never for content illegal to hold."),
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL", help="With --embedding: efficientnet-lite0 (default) or a Hugging Face model folder."),
):
    """Create a bank."""
    from ..signals.embedding import DEFAULT_MODEL

    if model and not embedding:
        raise ModerateError("--model names an embedding model: add --embedding")
    bank = _engine(ctx).banks.create(name, action, description, kind, (model or DEFAULT_MODEL) if embedding else None,
                                     thumbnails)
    _out(f"created bank {bank.name} (" + (f"action {bank.action}" if bank.kind == "flagged" else bank.kind) + ")")


@bank_app.command("add")
def bank_add(
    ctx: typer.Context,
    bank: str = BANK,
    paths: List[Path] = typer.Argument(..., metavar="PATH", help="Image files or folders."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into folders."),
    reference_id: Optional[str] = typer.Option(None, "--id", metavar="ID", help="Reference id; with several files, they are all images of this one reference."),
    region: Optional[str] = typer.Option(None, "--region", metavar="X,Y,W,H", help="Only this part of each image is the reference: in pixels or fractions (0.5,0,0.5,1)."),
    source_url: Optional[str] = typer.Option(None, "--source-url", metavar="URL", help="Where the flagged item was found."),
    note: Optional[str] = typer.Option(None, "--note", metavar="TEXT", help="Free text kept with the references."),
    added_by: Optional[str] = typer.Option(None, "--added-by", metavar="NAME", help="Who adds them (default: your user name)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Add the readable files, report the others."),
    as_json: bool = typer.Option(False, "--json", help="Report as JSON."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, metavar="N", help="Processes hashing images (default: cores)."),
):
    """Hash images and add them as references (the images themselves are not stored)."""
    metadata = {"source_url": source_url, "note": note}
    if added_by:
        metadata["added_by"] = added_by
    engine = _engine(ctx)
    with progress("hashing references") as advance:
        report = engine.banks.add(bank, paths, recursive=recursive, reference_id=reference_id,
                                  metadata=metadata, skip_invalid=skip_invalid, region=region, progress=advance,
                                  workers=workers or os.cpu_count() or 1)
    for problem in report.skipped:
        _err(f"skipped: {problem.message}")
    for problem in report.warnings:
        _err(f"warning: {problem.source}: {problem.message}")
    if as_json:
        _out(json.dumps({"bank": bank, "added": [r.id for r in report.added],
                         "skipped": [p.message for p in report.skipped],
                         "warnings": [f"{p.source}: {p.message}" for p in report.warnings]}))
    else:
        _out(f"added {len(report.added)} references to {bank}" + (f", skipped {len(report.skipped)}" if report.skipped else ""))


@bank_app.command("reembed")
def bank_reembed(
    ctx: typer.Context,
    bank: str = BANK,
    model: str = typer.Option(..., "--model", metavar="MODEL", help="efficientnet-lite0, or a Hugging Face model folder."),
    sources: List[Path] = typer.Option(..., "--from", metavar="PATH", help="Folders (or files) holding the bank's images again; repeatable."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Re-embed the images found; the others lose their embedding."),
    as_json: bool = typer.Option(False, "--json", help="Report as JSON."),
):
    """Give a bank embeddings of another model (banks keep no images: they are found again by sha256)."""
    engine = _engine(ctx)
    with progress("re-embedding") as advance:
        report = engine.banks.reembed(bank, model, sources, skip_missing=skip_missing, progress=advance)
    if as_json:
        _out(json.dumps({"bank": bank, "model": report.model, "previous": report.previous,
                         "reembedded": report.reembedded, "missing": list(report.missing)}))
    else:
        _out(f"re-embedded {report.reembedded} images of {bank} with {report.model}"
             + (f"; {len(report.missing)} not found" if report.missing else ""))


MAX_HASH_LIST_BYTES = 4 << 30  # 10M PDQ lines with metadata fit well within


@bank_app.command("import")
def bank_import(
    ctx: typer.Context,
    bank: str = BANK,
    hash_list: str = typer.Argument(..., metavar="FILE", help="Hash list file, or - for standard input."),
    fmt: Optional[HashListFormat] = typer.Option(None, "--format", help="csv (ThreatExchange dataset) or txt ('TYPE HEX' lines: pdq, md5, video_md5, ...); default: detected."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Import the valid lines, report the others."),
    note: Optional[str] = typer.Option(None, "--note", metavar="TEXT", help="Free text kept with the imported references."),
):
    """Import hashes without images (industry hash lists)."""
    from ..errors import MediaError
    from ..media import Budgets, read_bytes

    source = "<stdin>" if hash_list == "-" else hash_list
    try:  # only a regular file (or stdin): a FIFO or a device named as a list never hangs
        text = read_bytes(hash_list, Budgets(max_bytes=MAX_HASH_LIST_BYTES), source).decode("utf-8-sig")
    except MediaError as exc:
        raise ModerateError(f"{source}: cannot read hash list: {exc.detail}") from None
    except UnicodeDecodeError:
        raise ModerateError(f"{source}: cannot read hash list: not UTF-8 text") from None
    engine = _engine(ctx)
    with progress("importing hashes", steps=False):  # one write to the store: timed, not counted
        report = engine.banks.import_hashes(bank, text, source=source, fmt=fmt, skip_invalid=skip_invalid,
                                            metadata={"note": note})
    for problem in report.skipped:
        _err(f"skipped {problem.source}: {problem.message}")
    for problem in report.warnings:
        _err(f"warning: {problem.source}: {problem.message}")
    _out(f"imported {report.imported} hashes into {bank}; {report.already_present} already present"
         + (f"; skipped {len(report.skipped)} invalid lines" if report.skipped else ""))


@bank_app.command("export")
def bank_export(
    ctx: typer.Context,
    bank: str = BANK,
    fmt: HashListFormat = typer.Option("csv", "--format", help="csv (with metadata) or txt ('TYPE HEX' lines, as pytx's file exchange reads)."),
):
    """Write a bank's hashes to standard output."""
    _engine(ctx).banks.export(bank, sys.stdout, fmt)


@bank_app.command("list")
def bank_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="A JSON list of banks.")):
    """List banks with their action, state and size (`bank refs BANK` lists a bank's references)."""
    banks = _engine(ctx).banks.list()
    if as_json:
        _out(json.dumps([b.to_dict() for b in banks]))
        return
    for b in banks:
        state = "enabled" if b.enabled else "disabled"
        _out(f"{b.name:<20} {b.action:<7} {state:<9} {b.references:>8} refs {b.hashes:>8} hashes  {b.description}")


@bank_app.command("enable")
def bank_enable(ctx: typer.Context, name: str = NAME):
    """Use a bank in checks again."""
    _engine(ctx).banks.enable(name)
    _out(f"enabled bank {name}")


@bank_app.command("disable")
def bank_disable(ctx: typer.Context, name: str = NAME):
    """Stop using a bank in checks (its references are kept)."""
    _engine(ctx).banks.disable(name)
    _out(f"disabled bank {name}")


@bank_app.command("rename")
def bank_rename(ctx: typer.Context, name: str = NAME,
                new_name: str = typer.Argument(..., metavar="NEW_NAME", help="1-64 letters, digits, '_', '-' or '.'.")):
    """Give a bank another name; its references move with it (allow-list entries naming them stop applying)."""
    _engine(ctx).banks.rename(name, new_name)
    _out(f"renamed bank {name} to {new_name}")


@bank_app.command("remove")
def bank_remove(ctx: typer.Context, bank: str = BANK,
                reference_id: str = typer.Argument(..., metavar="REF_ID", help="The reference's id (see `moderate bank refs BANK`).")):
    """Remove one reference from a bank."""
    removed = _engine(ctx).banks.remove(bank, reference_id)
    _out(f"removed {reference_id} ({removed} hashes) from {bank}")


@bank_app.command("delete")
def bank_delete(
    ctx: typer.Context,
    name: str = NAME,
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


@bank_app.command("refs")
def bank_refs(ctx: typer.Context, bank: str = BANK,
              as_json: bool = typer.Option(False, "--json", help='One JSON object: {"bank", "references"}.')):
    """List a bank's reference ids, one per line (what `explain`, `bank remove` and `search` name)."""
    ids = _engine(ctx).banks.reference_ids(bank)
    if as_json:
        _out(json.dumps({"bank": bank, "references": ids}))
        return
    for reference_id in ids:
        _out(reference_id)
    if not ids:
        _err(f"bank {bank} holds no references")
