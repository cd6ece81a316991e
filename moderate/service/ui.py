"""The web review UI at /ui: server-rendered pages (Jinja2 templates) for moderators.

Reviewer wellness comes first: every image is shown blurred and in grayscale until the moderator
reveals it (`v` reveals and blurs again). Viewing an item never claims it; a moderator claims
explicitly (`k`, or by deciding), releases a claim, skips (`n`: the session remembers skips, so
`next` moves past them) and signs out. A decision (`c` confirm, `r` reject) waits out a short undo
window in the page (`u` undoes it) before it is sent, because it feeds the banks at once.

Every item is shown as PNG frames rendered on the server from the stored upload, whatever its
format (TIFF, PDF pages, HEIC, AVIF, animation frames), with the evidence drawn on the frame it was
found in: the matched polygon as `moderate explain` draws it (green), PDQ regions (blue). Evidence
reads in words, with the bank's action and the reference's metadata (`engine.banks.lookup`).

Sign-in exchanges a moderator (or admin) token for a session (`moderate.service.sessions`); the
cookie holds only the session id, HttpOnly and SameSite=Strict, and every form carries the
session's CSRF token.
"""

from __future__ import annotations

import hmac
import io
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import MediaError
from ..sinks.queue import QueueError, ReviewItem, why_first
from .sessions import Session, Sessions
from .tokens import Tokens

COOKIE = "moderate_session"
LOGIN_COOKIE = "moderate_login"  # double-submit CSRF for the sign-in form (there is no session yet)
UNDO_SECONDS = 5
RENDER_SIZE = 1024  # px, longest side of a rendered frame
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"}
STATIC = {"ui.css": "text/css", "item.js": "text/javascript", "queue.js": "text/javascript"}
VARIANTS = {"mirrored": "mirrored", "flip_horizontal": "mirrored", "flip_vertical": "upside-down mirror",
            "rotate90": "rotated 90°", "rotate180": "rotated 180°", "rotate270": "rotated 270°"}


@dataclass(frozen=True)
class Rendered:
    index: int
    label: str  # "page 2", "frame 3"
    width: int  # original size: the evidence's coordinates
    height: int
    png: bytes


class Renders:
    """PNG frames of stored uploads, a few items kept in memory (a moderator flips through pages)."""

    def __init__(self, queue, budgets, keep: int = 6):
        self.queue, self.budgets, self.keep = queue, budgets, keep
        self.cache: OrderedDict[int, list[Rendered]] = OrderedDict()
        self.lock = threading.Lock()

    def frames(self, item: ReviewItem) -> list[Rendered]:
        if not item.has_image:  # purged: nothing is served, also not from the cache
            return []
        with self.lock:
            if item.id in self.cache:
                self.cache.move_to_end(item.id)
                return self.cache[item.id]
        rendered = self._render(item.id)
        with self.lock:
            self.cache[item.id] = rendered
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        return rendered

    def _render(self, item_id: int) -> list[Rendered]:
        from PIL import Image

        from ..media import decode

        data = self.queue.image(item_id)
        try:
            media = decode(data, self.budgets, RENDER_SIZE, name=f"review item {item_id}")
        except MediaError:  # what did not decode for the check does not decode here either
            return []
        out = []
        for frame in media.frames:
            png = io.BytesIO()
            Image.fromarray(frame.pixels).save(png, "PNG")
            label = f"page {frame.page + 1}" if frame.page is not None else f"frame {frame.index + 1}"
            if frame.origin == "embedded-image":  # a PDF page's picture, checked on its own too
                label += ", picture"
            out.append(Rendered(frame.index, label, frame.width, frame.height, png.getvalue()))
        return out


def router(engine, tokens: Tokens) -> APIRouter:
    from jinja2 import Environment, PackageLoader, select_autoescape

    ui = APIRouter(prefix="/ui", include_in_schema=False)
    queue = engine.queue
    sessions = Sessions(engine.data_dir, tokens)
    renders = Renders(queue, engine.policy.limits)
    templates = Environment(loader=PackageLoader("moderate.service", "templates"), autoescape=select_autoescape(),
                            trim_blocks=True, lstrip_blocks=True)

    def page(name: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(templates.get_template(name).render(**context), status_code=status, headers=HEADERS)

    def signed_in(request: Request) -> Session:
        session = sessions.get(request.cookies.get(COOKIE))
        if session is None:
            raise HTTPException(303, headers={"Location": "/ui/login"})
        return session

    def posted(request: Request, csrf: str) -> Session:
        """The session of a form post, whose CSRF token must match (else 403, nothing done)."""
        session = signed_in(request)
        if not session.csrf_ok(csrf):
            raise HTTPException(403, {"error": "the form's CSRF token does not match this session: reload the page"})
        return session

    def refused(session: Session, exc: Exception, back: str) -> HTMLResponse:
        return page("message.html", 409, session=session, title="Refused", message=str(exc), back=back)

    @ui.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, {"error": f"no static file {name!r}"})
        body = resources.files("moderate.service").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    @ui.get("/login")
    def login_form() -> HTMLResponse:
        csrf = secrets.token_urlsafe(24)
        response = page("login.html", csrf=csrf)
        response.set_cookie(LOGIN_COOKIE, csrf, httponly=True, samesite="strict", path="/ui/login")
        return response

    @ui.post("/login")
    def login(request: Request, token: str = Form(""), csrf: str = Form("")) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not (expected and hmac.compare_digest(expected, csrf)):
            return page("login.html", 403, csrf=csrf, error="The sign-in form expired: reload the page.")
        session_id = sessions.start(token)
        if session_id is None:
            return page("login.html", 403, csrf=csrf, error="That token is unknown or may not review.")
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/ui",
                            secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return response

    @ui.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        posted(request, csrf)
        sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @ui.get("")
    def items(request: Request) -> HTMLResponse:
        session = signed_in(request)
        return page("queue.html", session=session, stats=queue.stats(), groups=queue.groups(200), why=why_first)

    @ui.get("/next")
    def next_item(request: Request) -> Response:
        """The next item to look at (not claimed by this): own claims and open items, minus skips."""
        session = signed_in(request)
        item = queue.next_for(session.moderator, session.skipped)
        return RedirectResponse(f"/ui/items/{item.id}" if item else "/ui", status_code=303)

    @ui.get("/items/{item_id}")
    def item_page(item_id: int, request: Request, frame: int | None = None) -> HTMLResponse:
        session = signed_in(request)
        try:
            item = queue.get(item_id)
        except QueueError as exc:
            return page("message.html", 404, session=session, title=f"Item {item_id}", message=str(exc))
        verdict = item.verdict
        frames = renders.frames(item)
        shown = _pick(frames, verdict.get("frame", 0) if frame is None else frame)
        evidence = _evidence(engine, verdict, frames)
        shapes = [shape for e in evidence if shown and e["frame"] == shown.index for shape in e["shapes"]]
        claim, claim_text = _claim(item, session.moderator)
        flagged = [b.name for b in engine.banks.list() if b.kind == "flagged"]
        return page("item.html", session=session, item=item, frames=frames, frame=shown, shapes=shapes,
                    stroke=f"{max(shown.width, shown.height) / 200:.1f}" if shown else "1",
                    evidence=evidence, evidence_frames={e["frame"] for e in evidence}, claim=claim,
                    claim_text=claim_text, why=why_first(verdict), copies=queue.copies(item), banks=flagged,
                    undo_seconds=UNDO_SECONDS)

    @ui.get("/items/{item_id}/frames/{index}")
    def item_frame(item_id: int, index: int, request: Request) -> Response:
        signed_in(request)
        frames = renders.frames(queue.get(item_id))
        shown = _pick(frames, index)
        if shown is None or shown.index != index:
            raise HTTPException(410 if not frames else 404, {"error": f"review item {item_id}: no frame {index} to show"})
        return Response(shown.png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @ui.get("/items/{item_id}/image")
    def item_image(item_id: int, request: Request) -> Response:
        """Kept for old links: the first frame, rendered (never the raw upload)."""
        return item_frame(item_id, 0, request)

    def claim_route(action: str, change) -> None:
        """POST /items/{id}/claim and /release: change the claim, then back to the item."""
        def route(item_id: int, request: Request, csrf: str = Form("")) -> Response:
            session = posted(request, csrf)
            try:
                change(session.moderator, item_id)
            except QueueError as exc:
                return refused(session, exc, f"/ui/items/{item_id}")
            return RedirectResponse(f"/ui/items/{item_id}", status_code=303)
        ui.post(f"/items/{{item_id}}/{action}")(route)

    claim_route("claim", queue.claim)
    claim_route("release", queue.release)

    @ui.post("/items/{item_id}/skip")
    def skip(item_id: int, request: Request, csrf: str = Form("")) -> Response:
        session = posted(request, csrf)
        item = queue.get(item_id)
        if item.status == "claimed" and item.claimed_by == session.moderator:
            queue.release(session.moderator, item_id)  # skipping gives a claim back for others
        sessions.skip(session, item_id)
        return RedirectResponse("/ui/next", status_code=303)

    @ui.post("/items/{item_id}/decide")
    def decide(item_id: int, request: Request, decision: str = Form(...), note: str = Form(""),
               bank: str = Form(""), csrf: str = Form("")) -> Response:
        session = posted(request, csrf)
        try:
            item = queue.get(item_id)
            if not (item.status == "claimed" and item.claimed_by == session.moderator):
                queue.claim(session.moderator, item_id)  # deciding claims an open item first
            queue.decide(item_id, session.moderator, decision, note or None, bank or None)
        except QueueError as exc:
            return refused(session, exc, f"/ui/items/{item_id}")
        return RedirectResponse("/ui/next", status_code=303)

    return ui


def _pick(frames: list[Rendered], index: int) -> Rendered | None:
    return next((f for f in frames if f.index == index), frames[0] if frames else None)


def _claim(item: ReviewItem, moderator: str) -> tuple[str, str]:
    """The item's claim state as seen by `moderator`: (mine|other|open|decided, a sentence)."""
    if item.status == "decided":
        return "decided", f"Decided: {item.decision} by {item.decided_by} at {item.decided_at}"
    if item.status == "claimed":
        until = datetime.fromtimestamp(item.claim_expires or 0, timezone.utc).strftime("%H:%M UTC")
        if item.claimed_by == moderator:
            return "mine", f"Claimed by you until {until}"
        return "other", f"Claimed by {item.holder}: you can look, not decide"
    return "open", "Open: not claimed (claim with k, or decide with c or r)"


def _evidence(engine, verdict: dict, frames: list[Rendered]) -> list[dict]:
    """Each reason as a moderator reads it: in words, with its bank's action, the reference's
    metadata, the frame it was found in and the shapes to draw there."""
    reasons = verdict.get("reasons") or []
    keys = {(r["bank"], r["reference_id"]) for r in reasons if r.get("bank") and r.get("reference_id")}
    references = engine.banks.lookup(keys) if keys else {}
    banks = engine.catalog.current().banks
    labels = {f.index: f.label for f in frames}
    out = []
    for r in reasons:
        frame = r.get("frame", verdict.get("frame", 0))  # per-reason frames when the verdict has them
        reference = references.get((r.get("bank"), r.get("reference_id")))
        shapes = []
        if r.get("polygon"):
            shapes.append({"points": " ".join(f"{x:.1f},{y:.1f}" for x, y in r["polygon"])})
        elif r.get("region") and r.get("bank"):
            shapes.append({k: r["region"][k] for k in ("x", "y", "w", "h")})
        out.append({"plain": _plain(r), "rule": r.get("rule"), "action": r.get("action"), "bank": r.get("bank"),
                    "bank_action": (banks.get(r.get("bank")) or {}).get("action", "unknown (bank deleted)"),
                    "reference_id": r.get("reference_id"), "meta": reference.metadata if reference else {},
                    "frame": frame, "where": labels.get(frame, f"frame {frame + 1}"), "shapes": shapes})
    return out


def _plain(reason: dict) -> str:
    """One reason in words: what was found, how strongly, and how it was changed."""
    ref, signal = reason.get("reference_id"), reason.get("signal")
    how = [VARIANTS.get(reason.get("variant"), reason.get("variant"))] if reason.get("variant") else []
    if reason.get("bank"):
        if reason.get("inliers") is not None:
            how.insert(0, f"{reason['inliers']} matching points")
        if signal == "pdq" and reason.get("distance") is not None:
            how.insert(0, f"{int(reason['distance'])} of 256 hash bits differ")
        if reason.get("score") is not None:
            how.insert(0, f"similarity {reason['score']:.2f}")
        verb = "Contains" if signal == "keypoints" else "Looks like" if signal == "pdq" else "Resembles"
        return f"{verb} flagged image {ref}" + (f", {', '.join(how)}" if how else "")
    if reason.get("rule") == "on_error":
        return f"Could not be checked: {reason.get('detail') or 'the input did not decode'}"
    if reason.get("signer"):
        return f"Signed original of {reason['signer']}"
    return reason.get("detail") or str(reason.get("rule"))
