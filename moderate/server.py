"""The HTTP API: what an upload service calls before it accepts a file.

    POST /v1/check      multipart (field `file`), a raw body, or JSON {"url": ...} -> verdict JSON
    GET  /v1/banks      and bank routes (admin): create, enable, disable, import, export
    GET  /v1/queue      and queue routes (moderator): item, image, claim, decide, stats
    GET  /ui            the web review UI for moderators (see `moderate.ui`)
    GET  /healthz       liveness, no token
    GET  /openapi.json  the API description

Every route but /healthz wants `Authorization: Bearer TOKEN` (see `moderate tokens`); the token's
role decides what it may do (401 without a valid token, 403 for the wrong role). Bodies over the
cap are refused with 413 while they stream in, before they are buffered; each token has a request
rate limit (429). The engine (index, policy, models) is loaded once per server process.

An input that cannot be checked answers 422 with its media error code *and* the policy's
`on_error` verdict, so a caller that only looks at `verdict` still fails closed.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .engine import Engine
from .errors import HashListError, ModerateError, PolicyError, StoreError
from .fetch import is_url
from .queue import QueueError
from .tokens import Token, Tokens
from .ui import router as ui_router


@dataclass(frozen=True)
class ServerLimits:
    max_body: int = 64 * 1024 * 1024  # bytes per request
    per_minute: int = 600  # requests per token per minute


class _BodyCap:
    """ASGI middleware: 413 as soon as a request body exceeds the cap (declared or streamed)."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await _too_large(send, self.max_body)
        seen = 0
        over = replied = False

        async def counted_receive():
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    over = True  # the app sees a client that went away; we answer 413 in its place
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal replied
            if not over:
                return await send(message)
            if not replied:
                replied = True
                await _too_large(send, self.max_body)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
            if not replied:
                replied = True
                await _too_large(send, self.max_body)


async def _too_large(send, cap: int) -> None:
    import json

    body = json.dumps({"error": f"request body is over the {cap} byte cap", "error_code": "too_large"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _RateLimit:
    """A fixed one-minute window per token: simple, and enough to stop a runaway client."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.windows: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def allow(self, name: str) -> bool:
        window = int(time.monotonic() // 60)
        with self.lock:
            start, count = self.windows.get(name, (window, 0))
            if start != window:
                start, count = window, 0
            self.windows[name] = (start, count + 1)
            return count < self.per_minute


def create_app(engine: Engine, limits: ServerLimits = ServerLimits()) -> FastAPI:
    """The API over one engine (FastAPI is imported with this module, never by `moderate --help`)."""
    from . import __version__

    app = FastAPI(title="moderate", version=__version__,
                  description="Allow, block or review incoming images against banks of flagged references.")
    tokens = Tokens(engine.data_dir)
    rate = _RateLimit(limits.per_minute)
    bearer = HTTPBearer(auto_error=False)

    def role(needed: str):
        def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Token:
            token = tokens.check(credentials.credentials) if credentials else None
            if token is None:
                raise HTTPException(401, {"error": "missing or unknown bearer token"},
                                    headers={"WWW-Authenticate": "Bearer"})
            if not token.allows(needed):
                raise HTTPException(403, {"error": f"token {token.name!r} ({token.role}) may not do this: needs {needed}"})
            if not rate.allow(token.name):
                raise HTTPException(429, {"error": f"over {limits.per_minute} requests per minute for {token.name!r}"})
            return token
        return check

    @app.exception_handler(ModerateError)
    async def refused(request: Request, exc: ModerateError):
        status = 503 if isinstance(exc, StoreError) else 500 if isinstance(exc, PolicyError) else 400
        if "no bank named" in str(exc) or "no review item" in str(exc):
            status = 404
        elif isinstance(exc, QueueError):
            status = 409  # claimed by someone else, already decided
        body = {"error": str(exc)}
        if isinstance(exc, HashListError):
            body["problems"] = [{"line": line, "problem": problem} for line, problem in exc.problems]
        return JSONResponse(body, status_code=status)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    @app.post("/v1/check", summary="Check one input: multipart `file`, raw body, or JSON {\"url\": ...}")
    async def check(request: Request, enqueue: bool = False, token: Token = Depends(role("checker"))):
        source, name = await _input_of(request)
        verdict = await _in_thread(lambda: engine.check(source, name=name, actor=f"token:{token.name}", enqueue=enqueue))
        body = verdict.to_dict()
        return JSONResponse(body, status_code=422 if verdict.error_code else 200)

    @app.get("/v1/banks")
    def banks(token: Token = Depends(role("checker"))) -> list[dict]:
        return [b.to_dict() for b in engine.banks.list()]

    @app.post("/v1/banks")
    async def create_bank(request: Request, token: Token = Depends(role("admin"))) -> dict:
        spec = await request.json()
        bank = engine.banks.create(spec.get("name", ""), spec.get("action", "block"), spec.get("description", ""),
                                   spec.get("kind", "flagged"))
        return bank.to_dict()

    @app.post("/v1/banks/{name}/references", summary="Add an image (multipart `file`, optional `id`, `note`, `source_url`)")
    async def add_reference(name: str, request: Request, token: Token = Depends(role("admin"))) -> dict:
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, {"error": "multipart body needs a file field named 'file'"})
        data = await upload.read()
        reference_id = str(form.get("id") or (upload.filename or "upload").rsplit(".", 1)[0])
        metadata = {"added_by": f"token:{token.name}", "note": form.get("note"), "source_url": form.get("source_url")}
        reference = await _in_thread(lambda: engine.banks.add_bytes(name, data, reference_id, metadata))
        return {"bank": name, "reference_id": reference.id, "hashes": len(reference.pdq)}

    @app.post("/v1/banks/{name}/enable")
    def enable(name: str, token: Token = Depends(role("admin"))) -> dict:
        return engine.banks.enable(name).to_dict()

    @app.post("/v1/banks/{name}/disable")
    def disable(name: str, token: Token = Depends(role("admin"))) -> dict:
        return engine.banks.disable(name).to_dict()

    @app.post("/v1/banks/{name}/import", summary="Import a hash list (csv or txt) sent as the body")
    async def import_hashes(name: str, request: Request, skip_invalid: bool = False,
                            token: Token = Depends(role("admin"))) -> dict:
        text = (await request.body()).decode("utf-8-sig", errors="replace")
        report = await _in_thread(lambda: engine.banks.import_hashes(
            name, text, source=f"import by {token.name}", skip_invalid=skip_invalid, metadata={"added_by": token.name}))
        return {"imported": report.imported, "already_present": report.already_present,
                "skipped": [{"line": p.source, "problem": p.message} for p in report.skipped]}

    @app.get("/v1/banks/{name}/export")
    def export(name: str, format: str = "csv", token: Token = Depends(role("admin"))):
        out = io.StringIO()
        engine.banks.export(name, out, format)
        return PlainTextResponse(out.getvalue(), media_type="text/csv" if format == "csv" else "text/plain")

    queue = engine.queue
    app.include_router(ui_router(queue, tokens))

    @app.get("/v1/queue", summary="Open items by priority (closest evidence first)")
    def queue_list(status: str = "open", limit: int = 50, token: Token = Depends(role("moderator"))) -> list[dict]:
        return [item.to_dict() for item in queue.list(None if status == "all" else status, limit)]

    @app.get("/v1/queue/stats")
    def queue_stats(token: Token = Depends(role("moderator"))) -> dict:
        return queue.stats()

    @app.get("/v1/queue/{item_id}")
    def queue_item(item_id: int, token: Token = Depends(role("moderator"))) -> dict:
        return queue.get(item_id).to_dict()

    @app.get("/v1/queue/{item_id}/image", summary="The stored upload (thumbnail=true for the small PNG)")
    def queue_image(item_id: int, thumbnail: bool = False, token: Token = Depends(role("moderator"))):
        from fastapi.responses import Response

        data = queue.image(item_id, thumbnail)
        if data is None:
            raise HTTPException(410, {"error": f"review item {item_id}: image purged or not decodable"})
        return Response(data, media_type="image/png" if thumbnail else "application/octet-stream",
                        headers={"Cache-Control": "no-store"})

    @app.post("/v1/queue/{item_id}/claim")
    def queue_claim(item_id: int, token: Token = Depends(role("moderator"))) -> dict:
        return queue.claim(token.name, item_id).to_dict()

    @app.post("/v1/queue/{item_id}/decide", summary="{\"decision\": \"confirm\"|\"reject\", \"note\", \"bank\"}")
    async def queue_decide(item_id: int, request: Request, token: Token = Depends(role("moderator"))) -> dict:
        spec = await request.json()
        item = await _in_thread(lambda: queue.decide(item_id, token.name, spec.get("decision", ""), spec.get("note"),
                                                     spec.get("bank")))
        return item.to_dict()

    return app


async def _input_of(request: Request) -> tuple[object, str]:
    """The input of a check request and the name it goes by in the verdict."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, {"error": "multipart body needs a file field named 'file'"})
        return await upload.read(), upload.filename or "<upload>"
    if kind == "application/json":
        try:
            spec = await request.json()
        except ValueError:
            raise HTTPException(400, {"error": "JSON body is not valid JSON"}) from None
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str) or not is_url(spec["url"]):
            # never a path: a string that is not a URL would make the server read its own files
            raise HTTPException(400, {"error": "JSON body must be {\"url\": \"https://...\"}"})
        return spec["url"], spec["url"]
    body = await request.body()
    return body, request.headers.get("x-filename", "<body>")


async def _in_thread(work):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)


def serve(engine: Engine, host: str, port: int, limits: ServerLimits = ServerLimits()) -> None:
    import uvicorn

    engine.catalog.current()  # load (or rebuild) the index before the first request
    uvicorn.run(_BodyCap(create_app(engine, limits), limits.max_body), host=host, port=port, log_level="info")
