"""`moderate exchange`: pull industry hash lists (python-threatexchange exchanges) into banks.

`exchange fetch` exits 0 when every exchange fetched, 5 when at least one failed (each failure
is one line on standard error; the other exchanges were fetched), 1 when the command itself failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ModerateError
from .banks import Action
from .common import _engine, _err, _out, app, progress

exchange_app = typer.Typer(help="Pull hash lists from industry exchanges into banks.", no_args_is_help=True)
app.add_typer(exchange_app, name="exchange")

FETCH_FAILED = 5


@exchange_app.command("add")
def exchange_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="1-55 letters, digits, '_', '-' or '.'."),
    type_: str = typer.Option(..., "--type", metavar="TYPE", help="file, sample, fb_threatexchange, ncmec or stop_ncii."),
    bank: Optional[str] = typer.Option(None, "--bank", metavar="BANK", help="The bank it feeds, created on first fetch (default: exchange.NAME)."),
    action: Action = typer.Option("block", "--action", help="The bank's action, when the fetch creates it."),
    path: Optional[Path] = typer.Option(None, "--path", metavar="FILE", help="file: the list, one 'TYPE HASH' per line."),
    privacy_group: Optional[int] = typer.Option(None, "--privacy-group", metavar="ID", help="fb_threatexchange: the privacy group."),
    environment: Optional[str] = typer.Option(None, "--environment", metavar="ENV", help="ncmec: Industry, NGO, Exploitative, ..."),
    credentials_env: Optional[str] = typer.Option(None, "--credentials-env", metavar="VAR", help="Read the credentials from this environment variable at each fetch."),
    credentials_file: Optional[Path] = typer.Option(None, "--credentials-file", metavar="PATH", help="Read them from this file (mode 0600)."),
):
    """Configure an exchange (nothing is fetched yet; credentials are never stored, only where they are)."""
    settings = {"filename": str(path.absolute()) if path else None, "privacy_group": privacy_group, "environment": environment}
    exchange = _engine(ctx).exchanges.add(
        name, type_, bank, action,
        {key: value for key, value in settings.items() if value is not None}, credentials_env, credentials_file)
    _out(f"added exchange {exchange.name} ({exchange.type}) feeding bank {exchange.bank}")


@exchange_app.command("list")
def exchange_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="A JSON list of exchanges.")):
    """List exchanges with their bank, last fetch, checkpoint and counts."""
    engine = _engine(ctx)
    exchanges = engine.exchanges
    references = {bank.name: bank.references for bank in engine.banks.list()}
    rows = []
    for exchange in exchanges.list():
        state = exchanges.state(exchange.name)
        rows.append({"name": exchange.name, "type": exchange.type, "bank": exchange.bank, "action": exchange.action,
                     "references": references.get(exchange.bank, 0),
                     "credentials": next(iter(exchange.credentials), None), "fetched_at": state.get("fetched_at"),
                     "checkpoint": state.get("checkpoint"), "last": state.get("last")})
    if as_json:
        _out(json.dumps(rows))
        return
    if not rows:
        _out("no exchanges (add one with `moderate exchange add NAME --type TYPE`)")
    for row in rows:
        last = row["last"] or {}
        fetched = (f"fetched {row['fetched_at']}: +{last.get('added', 0)} ~{last.get('replaced', 0)} -{last.get('removed', 0)}"
                   + (f", failed: {last['error']}" if last.get("error") else "")) if row["fetched_at"] else "never fetched"
        checkpoint = ", ".join(f"{k}={v}" for k, v in (row["checkpoint"] or {}).items()) or "none"
        _out(f"{row['name']}  {row['type']}  -> {row['bank']} ({row['action']}, {row['references']} refs)  {fetched}"
             f"  checkpoint: {checkpoint}")


@exchange_app.command("fetch")
def exchange_fetch(
    ctx: typer.Context,
    name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="One exchange (default: all of them)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON report per exchange, one a line."),
):
    """Pull each exchange's updates since its last checkpoint into its bank (exit 5 if any failed)."""
    exchanges = _engine(ctx).exchanges
    names = [exchanges.get(name).name] if name else [exchange.name for exchange in exchanges.list()]  # an unknown NAME: exit 1
    if not names:
        _err("no exchanges to fetch (add one with `moderate exchange add NAME --type TYPE`)")
    failed = False
    for each in names:
        try:
            with progress(f"fetching {each}") as advance:
                report = exchanges.fetch(each, progress=advance)
        except ModerateError as exc:  # this exchange's configuration: the others are still fetched
            _err(f"error: exchange {each}: {exc}")
            failed = True
            continue
        failed |= report.error is not None
        if report.error:
            _err(f"error: exchange {each}: {report.error}")
        if as_json:
            _out(json.dumps(report.to_dict()))
            continue
        skipped = sum(report.skipped.values())
        _out(f"{each}: added {report.added}, replaced {report.replaced}, removed {report.removed}, unchanged "
             f"{report.unchanged} in bank {report.bank}"
             + (f"; skipped {skipped} of other types ({', '.join(f'{k} {v}' for k, v in sorted(report.skipped.items()))}):"
                " only PDQ hashes and file digests become references" if skipped else "")
             + ("; stopped early, the next fetch resumes" if report.error else ""))
    if failed:
        raise typer.Exit(FETCH_FAILED)
