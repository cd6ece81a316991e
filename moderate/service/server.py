"""The HTTP API: what an upload service calls before it accepts a file.

    POST /v1/check        multipart (field `file`), a raw body, or JSON {"url": ...} -> verdict JSON
    POST /v1/check/batch  multipart, several `files` parts -> a verdict per file
    GET  /v1/lookup       a hash (pdq, md5, sha256) without the image -> the references it matches;
                          POST /v1/lookup/batch: several; GET /v1/compare: two hashes
    GET  /v1/banks        and bank routes: get, create, rename, delete, enable, disable, import,
                          export (admin; listing and getting: checker), references paged, one
                          reference (moderator), add and delete a reference (admin)
    GET  /v1/queue        and queue routes (moderator): item, image, claim, release, decide, stats
    GET  /ui              the web review UI for moderators (see `moderate.service.ui`)
    GET  /healthz         liveness, no token; GET /readyz: index loaded and fresh, store reachable
    GET  /metrics         Prometheus text format, no token (bind to an internal address)
    GET  /openapi.json    the API description, every route typed (`moderate.service.models`)

Every route but /healthz wants `Authorization: Bearer TOKEN` (see `moderate tokens`); the token's
role decides what it may do (401 without a valid token, 403 for the wrong role). Bodies over the
cap are refused with 413 while they stream in, before they are buffered; each token has a request
rate limit (429, per server process). The engine (index, policy, models) is loaded once per server
process; `serve(workers=N)` runs N processes on one socket, sharing the data folder and the store.

Every verdict answers 200, also the `on_error` verdict of an input that could not be decoded
(with `error_code` set): a client that treats 4xx as "not our problem" must not store it. Every
error is JSON with `error` (4xx for a malformed request, 503 when the server cannot check: store
down, nothing to check against); on /v1/check it also carries the `on_error` verdict. Ambiguous
requests (a multipart field twice, an unknown field, a JSON key twice) are refused: what is checked
is never something other than what the caller will store.
"""


import base64
import io
import json
import logging
import os
import pickle
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import metrics, models
from ..engine import Engine
from ..engine.lookup import LOOKUPS, parse as parse_hash
from ..errors import HashListError, MissingExtra, ModerateError, PolicyError, StoreError
from ..media.fetch import is_url
from ..sinks.queue import QueueError, UnknownItem, why_first
from ..sinks.webhooks import deliveries
from .tokens import Token, Tokens
from .ui import router as ui_router

log = logging.getLogger("moderate.server")  # log channel names are stable for operators
CHECK_PATH = "/v1/check"
ItemId = Annotated[int, Path(ge=0, lt=2**63)]
REPEATABLE = {"bank"}  # query parameters that are lists (`?bank=A&bank=B`); any other given twice is refused  # SQLite's integer range: larger is a 400, not an OverflowError


# Status by exception type, first match wins: the store down, a policy the store cannot serve (a
# bank it names is gone) or an extra this server lacks means it cannot do it now, which is no fault
# of the request.
STATUS = ((UnknownItem, 404), (QueueError, 409), (StoreError, 503), (PolicyError, 503), (MissingExtra, 503),
          (ModerateError, 400))
WORKERS_ENV = "MODERATE_SERVE_CONFIG"  # how `serve(workers=N)` hands the engine's settings to each worker


@dataclass(frozen=True)
class ServerLimits:
    max_body: int = 64 * 1024 * 1024  # bytes per request
    per_minute: int = 600  # requests per token per minute (per server process)
    max_batch: int = 32  # files per /v1/check/batch request
    max_lookups: int = 100  # hashes per /v1/lookup/batch request


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
    """Requests per token in a moving one-minute window (the `limits` package, in memory)."""

    def __init__(self, per_minute: int):
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def allow(self, name: str) -> bool:
        return self.limiter.hit(self.item, "token", name)


ERRORS = {status: {"model": models.Error, "description": why} for status, why in (
    (400, "malformed request (one-line `error`)"), (401, "missing or unknown bearer token"),
    (403, "the token's role may not do this"), (404, "no such bank, reference or review item"),
    (409, "the item's state refuses it (claimed by someone else, already decided)"),
    (413, "request body over the cap"), (429, "over the token's rate limit"),
    (503, "the server cannot check now (store down, nothing to check against)"))}


def create_app(engine: Engine, limits: ServerLimits = ServerLimits()) -> FastAPI:
    """The API over one engine (FastAPI is imported with this module, never by `moderate --help`)."""
    from .. import __version__

    app = FastAPI(title="moderate", version=__version__, dependencies=[Depends(_single_query_values)],
                  responses=ERRORS,
                  description="Allow, block or review incoming images against banks of flagged references.")
    tokens = Tokens(engine.data_dir)
    rate = _RateLimit(limits.per_minute)
    bearer = HTTPBearer(auto_error=False)
    index_seen: dict[str, float] = {}  # generation -> when this process first served it (index age)
    shared_metrics = metrics.Shared(engine, index_seen)

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

    checker, moderator, admin = (Depends(role(r)) for r in ("checker", "moderator", "admin"))

    def bank_named(name: str) -> str:
        """The path's bank, 404 when the store has none of that name (looked up, not string-matched)."""
        if name not in engine.catalog.current().banks:
            raise HTTPException(404, {"error": f"no bank named {name!r}"})
        return name

    BankName = Annotated[str, Depends(bank_named)]

    def answer(request: Request, status: int, body: dict, headers: dict | None = None) -> JSONResponse:
        """Every error goes out through here: JSON, and on /v1/check with the verdict to apply."""
        if request.url.path.startswith(CHECK_PATH):
            body = {**body, "verdict": engine.policy.on_error}  # fail closed for callers that read only this
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ModerateError)
    async def refused(request: Request, exc: ModerateError):
        status = next(code for kind, code in STATUS if isinstance(exc, kind))
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

    # -- health ---------------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    def healthz() -> models.Health:
        return models.Health(status="ok", version=__version__)

    @app.get("/readyz", tags=["health"], summary="Readiness: index loaded and fresh, store and database reachable",
             response_model=models.Readiness, responses={503: {"model": models.Readiness}})
    def readyz():
        try:
            snapshot = engine.catalog.current()
            if engine.store.generation() != snapshot.generation:
                raise StoreError("the index is behind the store (a rebuild is due)")
            engine.queue.stats()  # the SQLite database answers
        except ModerateError as exc:
            return JSONResponse(models.Readiness(status="unready", error=str(exc)).model_dump(exclude_none=True), 503)
        seen = index_seen.setdefault(snapshot.generation, time.monotonic())
        return models.Readiness(status="ready", generation=snapshot.generation, index_hashes=len(snapshot.pdq),
                                index_age_seconds=round(time.monotonic() - seen, 1))

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics: checks, latency, queue, index, webhooks",
             response_class=PlainTextResponse)
    def prometheus():
        body, kind = metrics.exposition(shared_metrics)
        return Response(body, media_type=kind)

    # -- checks ---------------------------------------------------------------------------------

    def check_one(source, name: str, token: Token, enqueue: bool, route: str):
        start = time.perf_counter()
        verdict = engine.check(source, name=name, actor=f"token:{token.name}", enqueue=enqueue)
        metrics.observe(verdict, time.perf_counter() - start, route)
        return verdict

    @app.post(CHECK_PATH, tags=["checks"], response_model=models.Verdict,
              summary="Check one input: multipart `file`, raw body, or JSON {\"url\": ...}",
              openapi_extra={"requestBody": {"required": True, "content": {
                  **models.multipart({"file": "the input"})["requestBody"]["content"],
                  **models.json_body(models.CheckURL)["requestBody"]["content"],
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def check(request: Request, enqueue: bool = False, token: Token = checker):
        source, name = await _input_of(request)
        verdict = await _in_thread(lambda: check_one(source, name, token, enqueue, "check"))
        return JSONResponse(verdict.to_dict())  # 200 also for an input that could not be decoded: its verdict is on_error

    @app.post(f"{CHECK_PATH}/batch", tags=["checks"], response_model=models.BatchVerdicts,
              summary="Check several files in one request: a verdict per file, in the order sent",
              openapi_extra=models.multipart({"files": "the inputs, one part each"}, many=True))
    async def check_batch(request: Request, enqueue: bool = False, token: Token = checker):
        uploads = await _files(request, "files", limits.max_batch)
        inputs = [(await upload.read(), upload.filename or f"<file {i}>") for i, upload in enumerate(uploads)]
        verdicts = await _in_thread(lambda: [check_one(data, name, token, enqueue, "batch") for data, name in inputs])
        worst = max((v.verdict for v in verdicts), key=("allow", "review", "block").index)
        return JSONResponse({"verdict": worst, "results": [v.to_dict() for v in verdicts]})

    # -- hash lookups --------------------------------------------------------------------------

    Banks = Annotated[list[str] | None, Query(description="look only in these banks (repeat it); default: "
                                                          "the banks the policy checks against")]
    Limit = Annotated[int, Query(ge=1, le=1000, description="matches listed per hash, closest first")]

    def lookup_result(signal: str, value: str, matches: list, limit: int) -> dict:
        return {"signal": signal, "hash": parse_hash(signal, value), "matches": [m.to_dict() for m in matches[:limit]],
                "truncated": len(matches) > limit}

    @app.get("/v1/lookup", tags=["lookups"], response_model=models.LookupResult,
             summary="Look up a hash (pdq, md5, sha256) in the banks without sending the image")
    def lookup(signal: Annotated[Literal[LOOKUPS], Query(description="pdq, md5 or sha256")],
               hash: Annotated[str, Query(description="lowercase hex: 64 characters for pdq and sha256, 32 for md5")],
               bank: Banks = None, max_distance: Annotated[int | None, Query(
                   ge=0, le=256, description="pdq only; default: the policy's loosest pdq band")] = None,
               limit: Limit = 100, token: Token = checker):
        return lookup_result(signal, hash, engine.lookup(signal, hash, bank, max_distance), limit)

    @app.post("/v1/lookup/batch", tags=["lookups"], response_model=models.LookupBatch,
              summary=f"Look up 1 to {limits.max_lookups} hashes: a result per item, an invalid item answered in its slot",
              openapi_extra=models.json_body(models.LookupItem, most=limits.max_lookups))
    async def lookup_batch(request: Request, bank: Banks = None, limit: Limit = 100, token: Token = checker):
        data = await _json(request)
        if not isinstance(data, list) or not 1 <= len(data) <= limits.max_lookups:
            raise HTTPException(400, {"error": f"body: send a JSON list of 1 to {limits.max_lookups} "
                                               "{\"signal\", \"hash\"} objects"})
        items = [_lookup_item(item) for item in data]  # a LookupItem, or why the item is not one
        valid = [(item.signal, item.hash, item.max_distance) for item in items if isinstance(item, models.LookupItem)]
        found = iter(await _in_thread(lambda: engine.lookup_batch(valid, bank)))
        results = []
        for raw, item in zip(data, items):
            matches = next(found) if isinstance(item, models.LookupItem) else item
            if isinstance(matches, list):
                results.append(lookup_result(item.signal, item.hash, matches, limit))
            else:
                results.append(_failed_item(raw, str(matches)))
        return {"results": results}

    @app.get("/v1/compare", tags=["lookups"], response_model=models.Comparison,
             summary="Compare two hashes of one signal: distance, similarity and the policy band it falls in")
    def compare(signal: Annotated[Literal[LOOKUPS], Query(description="pdq, md5 or sha256")],
                a: Annotated[str, Query(description="a hash")], b: Annotated[str, Query(description="another hash")],
                token: Token = checker):
        return engine.compare(signal, a, b).to_dict()

    # -- banks ----------------------------------------------------------------------------------

    @app.get("/v1/banks", tags=["banks"], summary="Every bank")
    def banks(token: Token = checker) -> list[models.Bank]:
        return [b.to_dict() for b in engine.banks.list()]

    @app.post("/v1/banks", tags=["banks"], summary="Create a bank", openapi_extra=models.json_body(models.NewBank))
    async def create_bank(request: Request, token: Token = admin) -> models.Bank:
        spec = await _json_body(request, models.NewBank)
        return engine.banks.create(spec.name, spec.action, spec.description, spec.kind).to_dict()

    @app.get("/v1/banks/{name}", tags=["banks"], summary="One bank")
    def bank(name: BankName, token: Token = checker) -> models.Bank:
        return engine.banks.get(name).to_dict()

    @app.patch("/v1/banks/{name}", tags=["banks"], summary="Rename a bank (its references move with it)",
               openapi_extra=models.json_body(models.BankChange))
    async def rename_bank(name: BankName, request: Request, token: Token = admin) -> models.Bank:
        change = await _json_body(request, models.BankChange)
        return (await _in_thread(lambda: engine.banks.rename(name, change.name))).to_dict()

    @app.delete("/v1/banks/{name}", tags=["banks"], summary="Delete a bank and every reference in it")
    async def delete_bank(name: BankName, token: Token = admin) -> models.Deleted:
        removed = await _in_thread(lambda: engine.banks.delete(name))
        return models.Deleted(bank=name, hashes_removed=removed)

    @app.get("/v1/banks/{name}/references", tags=["references"], summary="A page of a bank's references, by id")
    def references(name: BankName, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, token: Token = moderator) -> models.ReferencePage:
        everything = sorted(engine.banks.references(name), key=lambda r: r.id)
        page = [_reference(r) for r in everything[offset:offset + limit]]
        return models.ReferencePage(bank=name, offset=offset, limit=limit, total=len(everything), references=page)

    def reference_named(name: BankName, reference_id: str) -> tuple[str, str]:
        if not engine.banks.lookup([(name, reference_id)]):
            raise HTTPException(404, {"error": f"bank {name} has no reference {_short(reference_id)!r}"})
        return name, reference_id

    @app.get("/v1/banks/{name}/references/{reference_id:path}", tags=["references"],
             summary="One reference: its metadata (source URL, note, who added it and when) and first hash")
    def reference(key: Annotated[tuple, Depends(reference_named)], token: Token = moderator) -> models.Reference:
        return _reference(engine.banks.lookup([key])[key])

    @app.delete("/v1/banks/{name}/references/{reference_id:path}", tags=["references"],
                summary="Delete one reference (all its hashes and local features)")
    async def delete_reference(key: Annotated[tuple, Depends(reference_named)], token: Token = admin) -> models.Deleted:
        removed = await _in_thread(lambda: engine.banks.remove(*key))
        return models.Deleted(bank=key[0], reference_id=key[1], hashes_removed=removed)

    @app.post("/v1/banks/{name}/references", tags=["references"],
              summary="Add an image (multipart `file`, optional `id`, `note`, `source_url`)",
              openapi_extra=models.multipart({"file": "the flagged image (only its signals are kept)"},
                                             ("id", "note", "source_url")))
    async def add_reference(name: BankName, request: Request, token: Token = admin) -> models.AddedReference:
        form = await _form(request, files=("file",), texts=("id", "note", "source_url"))
        upload = form["file"]
        data = await upload.read()
        reference_id = str(form.get("id") or (upload.filename or "upload").rsplit(".", 1)[0])
        metadata = {"added_by": f"token:{token.name}", "note": form.get("note"), "source_url": form.get("source_url")}
        added = await _in_thread(lambda: engine.banks.add_bytes(name, data, reference_id, metadata))
        return models.AddedReference(bank=name, reference_id=added.id, hashes=len(added.pdq))

    @app.post("/v1/banks/{name}/enable", tags=["banks"], summary="Check against this bank again")
    def enable(name: BankName, token: Token = admin) -> models.Bank:
        return engine.banks.enable(name).to_dict()

    @app.post("/v1/banks/{name}/disable", tags=["banks"], summary="Stop checking against this bank (kept)")
    def disable(name: BankName, token: Token = admin) -> models.Bank:
        return engine.banks.disable(name).to_dict()

    @app.post("/v1/banks/{name}/import", tags=["banks"], summary="Import a hash list (csv or txt) sent as the body",
              openapi_extra={"requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def import_hashes(name: BankName, request: Request, skip_invalid: bool = False,
                            token: Token = admin) -> models.ImportReport:
        text = (await request.body()).decode("utf-8-sig", errors="replace")
        report = await _in_thread(lambda: engine.banks.import_hashes(
            name, text, source=f"import by {token.name}", skip_invalid=skip_invalid, metadata={"added_by": token.name}))
        return {"imported": report.imported, "already_present": report.already_present,
                "skipped": [{"line": p.source, "problem": p.message} for p in report.skipped],
                "warnings": [{"line": p.source, "problem": p.message} for p in report.warnings]}

    @app.get("/v1/banks/{name}/export", tags=["banks"], summary="The bank's hashes as a hash list (csv or txt)",
             response_class=PlainTextResponse)
    def export(name: BankName, format: Literal["csv", "txt"] = "csv", token: Token = admin):
        out = io.StringIO()
        engine.banks.export(name, out, format)
        return PlainTextResponse(out.getvalue(), media_type="text/csv" if format == "csv" else "text/plain")

    # -- review queue ---------------------------------------------------------------------------

    queue = engine.queue
    app.include_router(ui_router(engine, tokens))

    def item_out(item) -> dict:
        return {**item.to_dict(), "priority_reason": why_first(item.verdict)}

    @app.get("/v1/queue", tags=["queue"], summary="Open items by priority (closest evidence first)")
    def queue_list(status: Literal["open", "claimed", "decided", "all"] = "open",
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 50, token: Token = moderator) -> list[models.ReviewItem]:
        return [item_out(item) for item in queue.list(None if status == "all" else status, limit)]

    @app.get("/v1/queue/stats", tags=["queue"], summary="Counts by state and the oldest waiting item's age")
    def queue_stats(token: Token = moderator) -> models.QueueStats:
        return queue.stats()

    @app.get("/v1/queue/{item_id}", tags=["queue"], summary="One item (viewing does not claim it)")
    def queue_item(item_id: ItemId, token: Token = moderator) -> models.ReviewItem:
        return item_out(queue.get(item_id))

    @app.get("/v1/queue/{item_id}/image", tags=["queue"], response_class=Response,
             summary="The stored upload (thumbnail=true for the small PNG)",
             responses={200: {"description": "the bytes", "content": {kind: {"schema": {"type": "string", "format": "binary"}}
                                                                    for kind in ("application/octet-stream", "image/png")}},
                        410: {"model": models.Error, "description": "the image was purged"}})
    def queue_image(item_id: ItemId, thumbnail: bool = False, token: Token = moderator):
        data = queue.image(item_id, thumbnail)
        if data is None:
            raise HTTPException(410, {"error": f"review item {item_id}: image purged or not decodable"})
        return Response(data, media_type="image/png" if thumbnail else "application/octet-stream",
                        headers={"Cache-Control": "no-store"})

    @app.post("/v1/queue/{item_id}/claim", tags=["queue"], summary="Claim an item to decide it (claims expire)")
    def queue_claim(item_id: ItemId, token: Token = moderator) -> models.ReviewItem:
        return item_out(queue.claim(token.name, item_id))

    @app.post("/v1/queue/{item_id}/release", tags=["queue"], summary="Give your claim back: the item is open again")
    def queue_release(item_id: ItemId, token: Token = moderator) -> models.ReviewItem:
        return item_out(queue.release(token.name, item_id))

    @app.post("/v1/queue/{item_id}/decide", tags=["queue"], summary="Decide a claimed item: confirm or reject",
              openapi_extra=models.json_body(models.Decision))
    async def queue_decide(item_id: ItemId, request: Request, token: Token = moderator) -> models.ReviewItem:
        spec = await _json_body(request, models.Decision)
        item = await _in_thread(lambda: queue.decide(item_id, token.name, spec.decision, spec.note, spec.bank))
        return item_out(item)

    return app


def _reference(reference) -> dict:
    return {"bank": reference.bank, "id": reference.id, "pdq": list(reference.pdq),
            "listed": [list(pair) for pair in reference.listed], "flat": [list(pair) for pair in reference.flat],
            "metadata": reference.metadata}


def _lookup_item(raw) -> models.LookupItem | str:
    try:
        return models.LookupItem.model_validate(raw)
    except ValidationError as exc:
        return _problem(exc.errors()) if isinstance(raw, dict) else f"must be a {{signal, hash}} object, got {_kind(raw)}"


def _failed_item(raw, error: str) -> dict:
    """A batch item's answer when it is not looked up: its fields as sent (cut short) and why;
    `matches` is null, never an empty list a client could read as "nothing found"."""
    fields = raw if isinstance(raw, dict) else {}
    echo = {key: None if value is None else _short(value if isinstance(value, str) else json.dumps(value))
            for key in ("signal", "hash") for value in [fields.get(key)]}
    return {**echo, "matches": None, "error": error}


def _kind(value) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """JSON parsers disagree on which of two equal keys wins, so a body with both is refused."""
    twice = _repeated(key for key, _ in pairs)
    if twice is not None:
        raise ValueError(f"key {_short(twice)!r} appears more than once")
    return dict(pairs)


async def _json(request: Request):
    """The request body's JSON; 400 for anything else (nesting past the parser's recursion limit
    included, which would otherwise escape as a RecursionError)."""
    try:
        return json.loads(await request.body(), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = "nested too deeply" if isinstance(exc, RecursionError) else _short(str(exc))
        raise HTTPException(400, {"error": f"the body is not valid JSON: {problem}"}) from None


async def _json_body(request: Request, model: type[models.Body]) -> models.Body:
    """The request body as `model`; 400 for anything else."""
    data = await _json(request)
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


async def _files(request: Request, field: str, most: int) -> list:
    """A multipart body of only file parts named `field`: 1 to `most` of them."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise HTTPException(400, {"error": f"send the files as multipart/form-data parts named {field!r}"})
    form = await request.form(max_files=most + 1)
    uploads = []
    for key, value in form.multi_items():
        if key != field or isinstance(value, str):
            raise HTTPException(400, {"error": f"multipart field {_short(key)!r}: expected only file parts named {field!r}"})
        uploads.append(value)
    if not 1 <= len(uploads) <= most:
        raise HTTPException(400, {"error": f"send 1 to {most} files, got {len(uploads)}"})
    return uploads


def _single_query_values(request: Request) -> None:
    """`?enqueue=false&enqueue=true` means two things; refused like duplicate fields."""
    twice = _repeated(key for key, _ in request.query_params.multi_items() if key not in REPEATABLE)
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
        url = (await _json_body(request, models.CheckURL)).url
        if not is_url(url):
            # never a path: a string that is not a URL would make the server read its own files
            raise HTTPException(400, {"error": "JSON body must be {\"url\": \"https://...\"}"})
        return url, url
    body = await request.body()
    return body, request.headers.get("x-filename", "<body>")


async def _in_thread(work):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)


def serve(engine: Engine, host: str, port: int, limits: ServerLimits = ServerLimits(), workers: int = 1) -> None:
    """Serve the API; with `workers` > 1, that many processes on one socket (uvicorn's supervisor),
    each building its own engine over the same data folder and store and loading the index once."""
    import uvicorn

    engine.catalog.current()  # load (or rebuild) the index before the first request: a bad store fails here
    deliveries(engine.data_dir).start()  # send what earlier processes left in the webhook outbox
    if workers <= 1:
        uvicorn.run(_BodyCap(create_app(engine, limits), limits.max_body, engine.policy.on_error), host=host,
                    port=port, log_level="info")
        return
    settings = (str(engine.data_dir), engine.chroma_url, engine.policy, engine.allow_hosts, limits)
    os.environ[WORKERS_ENV] = base64.b64encode(pickle.dumps(settings)).decode()
    folder = engine.data_dir / "metrics"  # counters of every worker, summed at each scrape
    shutil.rmtree(folder, ignore_errors=True)  # a previous run's counts would be added to this one's
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    uvicorn.run("moderate.service.server:worker_app", factory=True, workers=workers, host=host, port=port,
                log_level="info")


def worker_app():
    """The app of one `serve(workers=N)` worker process (uvicorn calls it in each)."""
    data_dir, chroma_url, policy, allow_hosts, limits = pickle.loads(base64.b64decode(os.environ[WORKERS_ENV]))
    engine = Engine(data_dir, chroma_url, policy, allow_hosts)
    engine.catalog.current()
    return _BodyCap(create_app(engine, limits), limits.max_body, engine.policy.on_error)
