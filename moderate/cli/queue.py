"""`moderate queue` and `moderate audit`: the review queue and the audit log."""

from __future__ import annotations

import json
from typing import Literal, Optional

import typer

from ..errors import ModerateError
from .common import _engine, _out, app

queue_app = typer.Typer(help="The review queue: review verdicts that moderators work through.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
audit_app = typer.Typer(help="The hash-chained audit log of verdicts and decisions.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _moderator(name: Optional[str]) -> str:
    from ..banks import default_actor

    return name or default_actor()


MODERATOR = typer.Option(None, "--moderator", metavar="NAME", help="Who works the item (default: your user name).")
ITEM_ID = typer.Argument(..., metavar="ID", help="The item's number (moderate queue list).")
# The states `moderate.sinks.queue` stores and lists, and `all`; the queue module keeps no tuple of them.
Status = Literal["open", "claimed", "decided", "all"]


@queue_app.command("list")
def queue_list(ctx: typer.Context, status: Status = typer.Option("open", "--status", help="Which items."),
               limit: int = typer.Option(50, "--limit", help="At most this many."),
               as_json: bool = typer.Option(False, "--json", help="One JSON object per item.")):
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
def queue_show(ctx: typer.Context, item_id: int = ITEM_ID):
    """One item with all its evidence (JSON)."""
    _out(json.dumps(_engine(ctx).queue.get(item_id).to_dict(), indent=1))


@queue_app.command("claim")
def queue_claim(ctx: typer.Context, item_id: Optional[int] = typer.Argument(None, metavar="ID", help="The item's number; default: the next by priority."),
                moderator: Optional[str] = MODERATOR):
    """Claim an item for deciding; the claim expires after 15 minutes."""
    item = _engine(ctx).queue.claim(_moderator(moderator), item_id)
    _out(f"claimed {item.id} ({item.source}) for {item.claimed_by}")


@queue_app.command("decide")
def queue_decide(
    ctx: typer.Context,
    item_id: int = ITEM_ID,
    confirm: bool = typer.Option(False, "--confirm", help="The content is what the evidence says."),
    reject: bool = typer.Option(False, "--reject", help="A false positive: goes to the allow-list."),
    note: Optional[str] = typer.Option(None, "--note", metavar="TEXT", help="Why, for the audit log."),
    bank: Optional[str] = typer.Option(None, "--bank", metavar="BANK", help="With --confirm: add the item's signals to this bank."),
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
def audit_export(ctx: typer.Context, since: int = typer.Option(0, "--since", metavar="SEQ", help="After this sequence number.")):
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
