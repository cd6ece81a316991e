"""`moderate serve` and `moderate tokens`: the HTTP API and its tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import _engine, _out, app, choices

tokens_app = typer.Typer(help="API tokens for `moderate serve` (only their hashes are stored).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
Role = choices("..service.tokens", "ROLES")
TOKEN_NAME = typer.Argument(..., metavar="NAME", help="The token's name (who or what uses it).")


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    policy: Optional[Path] = typer.Option(None, "--policy", "-p", metavar="FILE", help="Policy file (default: built-in default)."),
    max_body: int = typer.Option(64 * 1024 * 1024, "--max-body", metavar="BYTES", help="Largest request body in bytes (413 above)."),
    rate_limit: int = typer.Option(600, "--rate-limit", metavar="N", help="Requests per minute per token (429 above)."),
    workers: int = typer.Option(1, "--workers", min=1, metavar="N", help="Server processes sharing the data folder and the store."),
):
    """Serve the HTTP API (POST /v1/check, bank routes, /healthz, /readyz, /metrics, /openapi.json)."""
    from ..service.server import ServerLimits
    from ..service.server import serve as run

    run(_engine(ctx, policy), host, port, ServerLimits(max_body, rate_limit), workers=workers)


webhooks_app = typer.Typer(help="The webhook outbox: deliveries kept until received, retried with backoff.",
                           no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
DeliveryStatus = choices("..sinks.webhooks", "STATUSES")


@webhooks_app.command("list")
def webhooks_list(
    ctx: typer.Context,
    status: Optional[DeliveryStatus] = typer.Option(None, "--status", help="Only deliveries in this state."),
    limit: int = typer.Option(100, "--limit", min=1, metavar="N", help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per delivery."),
):
    """List webhook deliveries: id, state, attempts, URL and the last error."""
    from ..sinks.webhooks import Outbox

    for d in Outbox(_engine(ctx).data_dir).list(status, limit):
        _out(json.dumps(d.to_dict()) if as_json else
             f"{d.id}  {d.status:<9} {d.attempts}/{d.max_attempts}  {d.url}  {d.last_error or ''}")


@webhooks_app.command("retry")
def webhooks_retry(
    ctx: typer.Context,
    ids: Optional[List[str]] = typer.Argument(None, metavar="DELIVERY_ID", help="Deliveries to send again (default: every failed one)."),
):
    """Send failed deliveries again now (this command waits for them, up to 15 s)."""
    from ..sinks.webhooks import deliveries

    sender = deliveries(_engine(ctx).data_dir)
    _out(f"retrying {len(sender.retry(ids or None))} deliveries")
    sender.wait()


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: str = TOKEN_NAME,
    role: Role = typer.Option(..., "--role", help="checker: check and list banks; moderator: also the review queue; admin: everything."),
):
    """Create a token; it is printed once (only its hash is kept)."""
    from ..service.tokens import Tokens

    secret = Tokens(_engine(ctx).data_dir).create(name, role)
    _out(secret)


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="A JSON list of tokens.")):
    """List tokens (names and roles, never secrets)."""
    from ..service.tokens import Tokens

    tokens = Tokens(_engine(ctx).data_dir).list()
    if as_json:
        _out(json.dumps([t.to_dict() for t in tokens]))
    for t in [] if as_json else tokens:
        _out(f"{t.name:<24} {t.role:<10} {t.created_at}")


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, name: str = TOKEN_NAME):
    """Revoke a token."""
    from ..service.tokens import Tokens

    Tokens(_engine(ctx).data_dir).revoke(name)
    _out(f"revoked {name}")
