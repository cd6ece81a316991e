"""The web review UI at /ui: server-rendered pages for moderators working the review queue.

Reviewer wellness comes first: every image is shown blurred and in grayscale until the moderator
clicks (or presses `v`) to reveal it. Keyboard: `v` reveal, `c` confirm, `r` reject, `n` next.
Opening an item claims it for the moderator (claims expire, see `moderate.sinks.queue`).

Sign-in takes a moderator (or admin) token, kept in an HttpOnly, SameSite=Strict cookie, so other
sites can neither read it nor make the browser post decisions with it.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..sinks.queue import QueueError, ReviewQueue
from .tokens import Token, Tokens

COOKIE = "moderate_token"

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; } td, th { padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
.shield { filter: blur(28px) grayscale(1); transition: filter .2s; }
.frame { position: relative; display: inline-block; max-width: 640px; }
.frame img { max-width: 640px; display: block; }
.frame svg { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
button { font-size: 1rem; margin-right: .5rem; } .keys { color: #777; }
"""

SCRIPT = """
const image = document.getElementById('image');
function reveal() { image && image.classList.remove('shield'); }
function decide(kind) { document.getElementById('decision').value = kind; document.getElementById('decide').submit(); }
document.addEventListener('keydown', (e) => {
  if (e.target.tagName === 'TEXTAREA' || e.target.tagName === 'INPUT') return;
  if (e.key === 'v') reveal();
  if (e.key === 'c') decide('confirm');
  if (e.key === 'r') decide('reject');
  if (e.key === 'n') window.location = '/ui/next';
});
"""


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)} - moderate</title>"
                        f"<style>{STYLE}</style></head><body>{body}</body></html>",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def router(queue: ReviewQueue, tokens: Tokens) -> APIRouter:
    ui = APIRouter(prefix="/ui", include_in_schema=False)

    def moderator(request: Request) -> Token:
        token = tokens.check(request.cookies.get(COOKIE, ""))
        if token is None or not token.allows("moderator"):
            raise HTTPException(303, headers={"Location": "/ui/login"})
        return token

    @ui.get("/login")
    def login_form() -> HTMLResponse:
        return page("Sign in", "<h1>moderate review</h1><form method='post' action='/ui/login'>"
                               "<label>Moderator token <input id='token' name='token' type='password' size='50'></label> "
                               "<button id='signin'>Sign in</button></form>")

    @ui.post("/login")
    def login(token: str = Form(...)) -> Response:
        found = tokens.check(token)
        if found is None or not found.allows("moderator"):
            return page("Sign in", "<p id='error'>That token is unknown or may not review.</p><a href='/ui/login'>Back</a>")
        response = RedirectResponse("/ui", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @ui.get("")
    def items(request: Request) -> HTMLResponse:
        moderator(request)
        rows = "".join(
            f"<tr class='item'><td><a href='/ui/items/{item.id}'>#{item.id}</a></td><td>{item.priority}</td>"
            f"<td>{html.escape(item.source)}</td><td>{html.escape(_top(item.verdict))}</td></tr>"
            for item in queue.list("open", 200)
        )
        stats = queue.stats()
        return page("Queue", f"<h1>Review queue</h1><p id='open-count'>{stats['open']} open, {stats['claimed']} claimed</p>"
                             f"<table><tr><th>item</th><th>priority</th><th>source</th><th>evidence</th></tr>{rows}</table>"
                             "<p><a href='/ui/next'>Work the next item</a> <span class='keys'>(n)</span></p>")

    @ui.get("/next")
    def next_item(request: Request) -> Response:
        token = moderator(request)
        try:
            item = queue.claim(token.name)
        except QueueError:
            return RedirectResponse("/ui", status_code=303)
        return RedirectResponse(f"/ui/items/{item.id}", status_code=303)

    @ui.get("/items/{item_id}")
    def item_page(item_id: int, request: Request) -> HTMLResponse:
        token = moderator(request)
        try:
            item = queue.claim(token.name, item_id)
        except QueueError as exc:
            return page(f"Item {item_id}", f"<p id='error'>{html.escape(str(exc))}</p><a href='/ui'>Queue</a>")
        verdict = item.verdict
        width, height = verdict.get("width") or 1, verdict.get("height") or 1
        boxes = "".join(
            f"<rect x='{r['region']['x']}' y='{r['region']['y']}' width='{r['region']['w']}' height='{r['region']['h']}'"
            f" fill='none' stroke='red' stroke-width='{max(width, height) / 150:.1f}'/>"
            for r in verdict.get("reasons", []) if r.get("region") and r.get("bank")
        )
        evidence = "".join(
            f"<tr><td>{html.escape(str(r.get('rule')))}</td><td>{html.escape(str(r.get('bank') or ''))}</td>"
            f"<td>{html.escape(str(r.get('reference_id') or ''))}</td><td>{_evidence(r)}</td>"
            f"<td>{html.escape(str(r.get('detail') or r.get('signer') or ''))}</td></tr>"
            for r in verdict.get("reasons", [])
        )
        picture = (f"<div class='frame'><img id='image' class='shield' src='/ui/items/{item.id}/image' alt='upload'"
                   f" onclick='reveal()'><svg viewBox='0 0 {width} {height}' preserveAspectRatio='none'>{boxes}</svg></div>"
                   if item.has_image else "<p>(image purged)</p>")
        return page(f"Item {item.id}", f"""
<p><a href='/ui'>Queue</a></p><h1>Item #{item.id}: {html.escape(item.source)}</h1>
{picture}
<p><button id='reveal' onclick='reveal()'>Reveal</button><span class='keys'>(v) - blurred and grayscale until revealed</span></p>
<table id='evidence'><tr><th>rule</th><th>bank</th><th>reference</th><th>evidence</th><th>detail</th></tr>{evidence}</table>
<form id='decide' method='post' action='/ui/items/{item.id}/decide'>
<input type='hidden' id='decision' name='decision' value=''>
<p><label>Note <textarea name='note' rows='2' cols='50'></textarea></label></p>
<p><label>Confirm into bank (optional) <input name='bank' size='16'></label></p>
<button type='button' id='confirm' onclick="decide('confirm')">Confirm (c)</button>
<button type='button' id='reject' onclick="decide('reject')">Reject (r)</button>
<a href='/ui/next'>Next (n)</a></form>
<script>{SCRIPT}</script>""")

    @ui.get("/items/{item_id}/image")
    def item_image(item_id: int, request: Request) -> Response:
        moderator(request)
        data = queue.image(item_id, thumbnail=False)
        if data is None:
            raise HTTPException(410)
        return Response(data, media_type=_media_type(data), headers={"Cache-Control": "no-store"})

    @ui.post("/items/{item_id}/decide")
    def decide(item_id: int, request: Request, decision: str = Form(...), note: str = Form(""),
               bank: str = Form("")) -> Response:
        token = moderator(request)
        try:
            queue.decide(item_id, token.name, decision, note or None, bank or None)
        except QueueError as exc:
            return page(f"Item {item_id}", f"<p id='error'>{html.escape(str(exc))}</p><a href='/ui'>Queue</a>")
        return RedirectResponse("/ui/next", status_code=303)

    return ui


def _top(verdict: dict) -> str:
    reasons = verdict.get("reasons") or []
    if not reasons:
        return verdict.get("error") or ""
    top = reasons[0]
    where = f" {top.get('bank')}/{top.get('reference_id')} {_evidence(top)}" if top.get("bank") else ""
    return f"{top.get('rule')}{where}"


def _media_type(data: bytes) -> str:
    """The browser needs a type to show the stored upload; anything we cannot name is not inlined."""
    for magic, kind in ((b"\xff\xd8", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"),
                        (b"BM", "image/bmp"), (b"RIFF", "image/webp")):
        if data.startswith(magic):
            return kind
    return "application/octet-stream"



def _evidence(reason: dict) -> str:
    """PDQ distance or keypoint inliers, as one short cell."""
    if reason.get("distance") is not None:
        return f"d={reason['distance']}"
    return f"{reason['inliers']} inliers" if reason.get("inliers") is not None else ""
