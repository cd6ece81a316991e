"""The HTTP API: what an upload service calls before it accepts a file.

    POST /v1/check      multipart (field `file`), a raw body, or JSON {"url": ...} -> verdict JSON
    GET  /v1/banks      and bank routes (admin): create, enable, disable, import, export
    GET  /v1/queue      and queue routes (moderator): item, image, claim, decide, stats
    GET  /ui            the web review UI for moderators (see `moderate.service.ui`)
    GET  /healthz       liveness, no token
    GET  /openapi.json  the API description

Every route but /healthz wants `Authorization: Bearer TOKEN` (see `moderate tokens`); the token's
role decides what it may do (401 without a valid token, 403 for the wrong role). Bodies over the
cap are refused with 413 while they stream in, before they are buffered; each token has a request
rate limit (429). The engine (index, policy, models) is loaded once per server process.

Every verdict answers 200, also the `on_error` verdict of an input that could not be decoded
(with `error_code` set): a client that treats 4xx as "not our problem" must not store it. Every
error is JSON with `error` (4xx for a malformed request, 503 when the server cannot check: store
down, nothing to check against); on /v1/check it also carries the `on_error` verdict. Ambiguous
requests (a multipart field twice, an unknown field, a JSON key twice) are refused: what is checked
is never something other than what the caller will store.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import Engine
from ..errors import HashListError, ModerateError, PolicyError, StoreError
from ..media.fetch import is_url
from ..sinks.queue import QueueError
from .tokens import Token, Tokens
from .ui import router as ui_router

log = logging.getLogger("moderate.server")  # log channel names are stable for operators
CHECK_PATH = "/v1/check"
ItemId = Annotated[int, Path(ge=0, lt=2**63)]  # SQLite's integer range: larger is a 400, not an OverflowError


@dataclass(frozen=True)
class ServerLimits:
    max_body: int = 64 * 1024 * 1024  # bytes per request
    per_minute: int = 600  # requests per token per minute


class _BodyCap:
    """ASGI middleware: 413 as soon as a request body exceeds the cap (declared or streamed)."""

    def __init__(self, app, max_body: int, on_error: str = "review"):
        self.app, self.max_body, self.on_error = app, max_body, on_error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await self._too_large(scope, send)
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
                await self._too_large(scope, send)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
            if not replied:
                replied = True
                await self._too_large(scope, send)

    async def _too_large(self, scope, send) -> None:
        error = {"error": f"request body is over the {self.max_body} byte cap", "error_code": "too_large"}
        if scope.get("path") == CHECK_PATH:
            error["verdict"] = self.on_error
        body = json.dumps(error).encode()
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
    from .. import __version__

    app = FastAPI(title="moderate", version=__version__, dependencies=[Depends(_single_query_values)],
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

    def answer(request: Request, status: int, body: dict, headers: dict | None = None) -> JSONResponse:
        """Every error goes out through here: JSON, and on /v1/check with the verdict to apply."""
        if request.url.path == CHECK_PATH:
            body = {**body, "verdict": engine.policy.on_error}  # fail closed for callers that read only this
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ModerateError)
    async def refused(request: Request, exc: ModerateError):
        # The store down, or a policy the store cannot serve (a bank it names is gone): this server
        # cannot check now, which is no fault of the request.
        status = 503 if isinstance(exc, (StoreError, PolicyError)) else 400
        if "no bank named" in str(exc) or "no review item" in str(exc):
            status = 404
        elif isinstance(exc, QueueError):
            status = 409  # claimed by someone else, already decided
        body = {"error": str(exc)}
        if isinstance(exc, HashListError):
            body["problems"] = [{"line": line, "problem": problem} for line, problem in exc.problems]
        return answer(request, status, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail
        error = detail.get("error") if isinstance(detail, dict) else None
        # `detail` is what FastAPI's own handler sent; `error` is the one line every error carries
        return answer(request, exc.status_code, {"error": error or str(detail), "detail": detail}, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return answer(request, 400, {"error": _problem(exc.errors())})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return answer(request, 503, {"error": f"internal error ({type(exc).__name__}); see the server log",
                                     "error_code": "internal"})

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    @app.post("/v1/check", summary="Check one input: multipart `file`, raw body, or JSON {\"url\": ...}")
    async def check(request: Request, enqueue: bool = False, token: Token = Depends(role("checker"))):
        source, name = await _input_of(request)
        verdict = await _in_thread(lambda: engine.check(source, name=name, actor=f"token:{token.name}", enqueue=enqueue))
        return JSONResponse(verdict.to_dict())  # 200 also for an input that could not be decoded: its verdict is on_error

    @app.get("/v1/banks")
    def banks(token: Token = Depends(role("checker"))) -> list[dict]:
        return [b.to_dict() for b in engine.banks.list()]

    @app.post("/v1/banks")
    async def create_bank(request: Request, token: Token = Depends(role("admin"))) -> dict:
        spec = await _json_body(request, NewBank)
        return engine.banks.create(spec.name, spec.action, spec.description, spec.kind).to_dict()

    @app.post("/v1/banks/{name}/references", summary="Add an image (multipart `file`, optional `id`, `note`, `source_url`)")
    async def add_reference(name: str, request: Request, token: Token = Depends(role("admin"))) -> dict:
        form = await _form(request, files=("file",), texts=("id", "note", "source_url"))
        upload = form["file"]
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
    def queue_list(status: Literal["open", "claimed", "decided", "all"] = "open",
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
                   token: Token = Depends(role("moderator"))) -> list[dict]:
        return [item.to_dict() for item in queue.list(None if status == "all" else status, limit)]

    @app.get("/v1/queue/stats")
    def queue_stats(token: Token = Depends(role("moderator"))) -> dict:
        return queue.stats()

    @app.get("/v1/queue/{item_id}")
    def queue_item(item_id: ItemId, token: Token = Depends(role("moderator"))) -> dict:
        return queue.get(item_id).to_dict()

    @app.get("/v1/queue/{item_id}/image", summary="The stored upload (thumbnail=true for the small PNG)")
    def queue_image(item_id: ItemId, thumbnail: bool = False, token: Token = Depends(role("moderator"))):
        from fastapi.responses import Response

        data = queue.image(item_id, thumbnail)
        if data is None:
            raise HTTPException(410, {"error": f"review item {item_id}: image purged or not decodable"})
        return Response(data, media_type="image/png" if thumbnail else "application/octet-stream",
                        headers={"Cache-Control": "no-store"})

    @app.post("/v1/queue/{item_id}/claim")
    def queue_claim(item_id: ItemId, token: Token = Depends(role("moderator"))) -> dict:
        return queue.claim(token.name, item_id).to_dict()

    @app.post("/v1/queue/{item_id}/decide", summary="{\"decision\": \"confirm\"|\"reject\", \"note\", \"bank\"}")
    async def queue_decide(item_id: ItemId, request: Request, token: Token = Depends(role("moderator"))) -> dict:
        spec = await _json_body(request, Decision)
        item = await _in_thread(lambda: queue.decide(item_id, token.name, spec.decision, spec.note, spec.bank))
        return item.to_dict()

    return app


class _Body(BaseModel):
    """A JSON request body: exactly these keys, of these types (no coercion)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CheckURL(_Body):
    url: str


class NewBank(_Body):
    name: str
    action: str = "block"
    description: str = ""
    kind: str = "flagged"


class Decision(_Body):
    decision: str
    note: str | None = None
    bank: str | None = None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """JSON parsers disagree on which of two equal keys wins, so a body with both is refused."""
    twice = _repeated(key for key, _ in pairs)
    if twice is not None:
        raise ValueError(f"key {_short(twice)!r} appears more than once")
    return dict(pairs)


async def _json_body(request: Request, model: type[_Body]) -> _Body:
    """The request body as `model`; 400 for anything else (nesting past the parser's recursion
    limit included, which would otherwise escape as a RecursionError)."""
    try:
        data = json.loads(await request.body(), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = "nested too deeply" if isinstance(exc, RecursionError) else _short(str(exc))
        raise HTTPException(400, {"error": f"the body is not valid JSON: {problem}"}) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(400, {"error": f"JSON body: {_problem(exc.errors())}"}) from None


async def _form(request: Request, files: tuple[str, ...], texts: tuple[str, ...] = ()) -> dict:
    """A multipart body's fields: each expected one at most once and of its kind, nothing else, and
    every file field present. With two `file` parts the one checked and the one stored could differ."""
    form = await request.form()
    fields: dict = {}
    for key, value in form.multi_items():
        if key in fields:
            raise HTTPException(400, {"error": f"multipart field {key!r} is sent more than once: send one input per request"})
        if key not in files + texts:
            raise HTTPException(400, {"error": f"unknown multipart field {_short(key)!r}: expected {', '.join(files + texts)}"})
        if (key in files) == isinstance(value, str):
            raise HTTPException(400, {"error": f"multipart field {key!r} must be {'a file' if key in files else 'text'}"})
        fields[key] = value
    missing = [key for key in files if key not in fields]
    if missing:
        raise HTTPException(400, {"error": f"multipart body needs a file field named {missing[0]!r}"})
    return fields


def _single_query_values(request: Request) -> None:
    """`?enqueue=false&enqueue=true` means two things; refused like duplicate fields."""
    twice = _repeated(key for key, _ in request.query_params.multi_items())
    if twice is not None:
        raise HTTPException(400, {"error": f"query parameter {_short(twice)!r} is given more than once"})


def _repeated(keys) -> str | None:
    """The first key that occurs more than once, if any."""
    return next((key for key, n in Counter(keys).items() if n > 1), None)


def _problem(errors) -> str:
    """The first validation error as one line: where, and what is wrong."""
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return _short(f"{where}: {first.get('msg', 'invalid')}")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


async def _input_of(request: Request) -> tuple[object, str]:
    """The input of a check request and the name it goes by in the verdict."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        upload = (await _form(request, files=("file",)))["file"]
        return await upload.read(), upload.filename or "<upload>"
    if kind == "application/json":
        url = (await _json_body(request, CheckURL)).url
        if not is_url(url):
            # never a path: a string that is not a URL would make the server read its own files
            raise HTTPException(400, {"error": "JSON body must be {\"url\": \"https://...\"}"})
        return url, url
    body = await request.body()
    return body, request.headers.get("x-filename", "<body>")


async def _in_thread(work):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)


def serve(engine: Engine, host: str, port: int, limits: ServerLimits = ServerLimits()) -> None:
    import uvicorn

    engine.catalog.current()  # load (or rebuild) the index before the first request
    uvicorn.run(_BodyCap(create_app(engine, limits), limits.max_body, engine.policy.on_error), host=host, port=port,
                log_level="info")
