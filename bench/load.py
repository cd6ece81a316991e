"""Load on a real `moderate serve`: uploads being checked while moderators race for the review queue.

A fresh data folder gets a block bank (`LOAD_BLOCK`: astronaut, coffee, rocket) and a review bank
(`LOAD_REVIEW`: chelsea, motorcycle, hubble, moon) of scikit-image photos, a checker token and one
moderator token per moderator client (`moderate.service.tokens.Tokens`). `moderate serve` runs as a
subprocess on 127.0.0.1 (with `--rate-limit` raised out of the way: the per-token limit is not what
is measured). Then, from one asyncio process with `httpx.AsyncClient`:

- baseline: `CLIENTS` clients calling `GET /healthz` for `BASELINE_SECONDS`: the server's floor;
- load: `CLIENTS` clients for `scale.load_seconds` (60 s, 15 s with --quick), each stopping by itself
  at the deadline (in-flight requests finish):
  * `UPLOADERS` upload clients post real photo JPEGs (1024 px and 2048 px, quality 90) as raw
    bodies, each with a unique `X-Filename`: flagged photos (no enqueue, block expected), review-bank
    photos with `?enqueue=true` (review expected, queued) and clean photos with `?enqueue=true`
    (allow expected);
  * the other clients are moderators, one token each: `GET /v1/queue`, claim an item (half the time
    the top one, else one of the top three, so several moderators race for the same item on
    purpose), decide it (confirm; a quarter of confirms with `bank=LOAD_REVIEW`, which adds the
    item's signals to that bank; items of `REJECTED_PHOTO` are rejected, which puts them on the
    allow-list, so that photo's later uploads are allowed). A loser of a claim race sometimes tries
    to decide anyway, and a winner sometimes decides twice: both must get 409.

Reported: requests/s overall and per kind, p50/p99 latency per kind (client side, so including the
client's own event loop on the same machine), status codes (409 expected for lost races; any 5xx is
a problem), the server's peak RSS (VmHWM), and integrity, from the SQLite database and the audit log
after the server stopped:
 (a) review items queued == enqueueing checks answered `review`, matched by name (none lost, none twice);
 (b) no item decided twice, and the 200 decides are exactly the decided items (same ids, same moderator);
 (c) `moderate audit verify` passes; one `verdict` entry per answered check and one `decision`
     entry per 200 decide, matched by name and item id;
 (d) decision feed-back: ALLOWLIST references == 200 rejects, LOAD_REVIEW grew by the 200 confirms
     with a bank.
The server's stderr and stdout (uvicorn's access log) are kept in `bench/out/load-server.std*.log`;
tracebacks in stderr and 5xx lines in the access log are counted.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from skimage import data as skdata

from . import photos
from .common import OUT, SEED, Row, Scale, Section, fmt_rate, fmt_ratio, moderate_script, percentiles_ms, run

CLIENTS = 32
MODERATORS = 8
UPLOADERS = CLIENTS - MODERATORS
BASELINE_SECONDS = {"full": 15, "quick": 5}
BLOCK_BANK, REVIEW_BANK = "LOAD_BLOCK", "LOAD_REVIEW"
SOURCES = {**photos.PHOTOS, "camera": skdata.camera, "moon": skdata.moon, "coins": skdata.coins}
BLOCK_PHOTOS = ("astronaut", "coffee", "rocket")
REVIEW_PHOTOS = ("chelsea", "motorcycle", "hubble", "moon")
REJECTED_PHOTO = "moon"  # its review items are rejected (allow-list); the others are confirmed
CLEAN_PHOTOS = ("ihc", "retina", "camera", "coins")
UPLOAD_SIZES = ("1024px", "2048px")
CONFIRM_TO_BANK = 0.25  # share of confirms that add the item's signals to REVIEW_BANK
LOSER_DECIDES = 0.3  # share of lost claim races followed by a decide anyway (409 expected)
WINNER_DECIDES_AGAIN = 0.1  # share of won decides followed by a second decide (409 expected)
EMPTY_QUEUE_PAUSE = 0.05  # s a moderator waits when the queue shows nothing open
REQUEST_TIMEOUT = 120.0
KINDS = {
    "check_block": "POST /v1/check, flagged photo",
    "check_review": "POST /v1/check?enqueue=true, review-bank photo",
    "check_allow": "POST /v1/check?enqueue=true, clean photo",
    "queue_list": "GET /v1/queue",
    "claim": "POST /v1/queue/{id}/claim",
    "decide": "POST /v1/queue/{id}/decide",
}
EXPECTED_VERDICT = {"check_block": "block", "check_review": "review", "check_allow": "allow"}


# -- setting up --------------------------------------------------------------------------------------


def _rgb(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.asarray(photos._rgb(array)))


def _prepare(folder: Path) -> tuple[Path, dict[str, dict[str, bytes]], str, list[str]]:
    """Data folder with both banks and the tokens; the upload JPEGs per kind ({name: bytes})."""
    cli, data_dir = moderate_script(), folder / "data"
    uploads: dict[str, dict[str, bytes]] = {kind: {} for kind in EXPECTED_VERDICT}
    for bank, action, names in ((BLOCK_BANK, "block", BLOCK_PHOTOS), (REVIEW_BANK, "review", REVIEW_PHOTOS)):
        references = folder / bank
        references.mkdir()
        for name in names:
            _rgb(SOURCES[name]()).save(references / f"{name}.png")
        run([cli, "--data-dir", str(data_dir), "bank", "create", bank, "--action", action])
        run([cli, "--data-dir", str(data_dir), "bank", "add", bank, str(references)])
    for kind, names in (("check_block", BLOCK_PHOTOS), ("check_review", REVIEW_PHOTOS), ("check_allow", CLEAN_PHOTOS)):
        for name in names:
            original = _rgb(SOURCES[name]())
            for size in UPLOAD_SIZES:
                out = io.BytesIO()
                photos.resized(original, size).save(out, "JPEG", quality=90)
                uploads[kind][f"{name}-{size}"] = out.getvalue()
    from moderate.service.tokens import Tokens

    tokens = Tokens(data_dir)
    checker = tokens.create("uploads", "checker")
    moderators = [tokens.create(f"mod-{i:02d}", "moderator") for i in range(MODERATORS)]
    return data_dir, uploads, checker, moderators


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(data_dir: Path, port: int, stdout, stderr) -> subprocess.Popen:
    cmd = [moderate_script(), "--data-dir", str(data_dir), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--rate-limit", str(10**9)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    deadline = time.monotonic() + 180
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"moderate serve exited {proc.returncode} before answering /healthz")
            try:
                if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moderate serve did not answer /healthz within 180 s")


def _stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


# -- the clients ------------------------------------------------------------------------------------


class Log:
    """Every request: kind, status (or the transport error's name), latency; plus what integrity needs."""

    def __init__(self):
        self.latency: dict[str, list[float]] = {}
        self.status: dict[str, Counter] = {}
        self.checks: list[dict] = []  # name, kind, enqueue, status, verdict
        self.decides: list[dict] = []  # item, moderator, decision, bank, status, why
        self.claims: list[dict] = []  # item, moderator, status
        self.bodies: list[dict] = []  # unexpected answers, a few kept for the report

    async def call(self, kind: str, send) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = await send()
            await response.aread()
        except httpx.HTTPError as exc:
            self._count(kind, type(exc).__name__, time.perf_counter() - start)
            return None
        self._count(kind, response.status_code, time.perf_counter() - start)
        if response.status_code not in (200, 409) and len(self.bodies) < 20:
            self.bodies.append({"kind": kind, "status": response.status_code, "body": response.text[:500]})
        return response

    def _count(self, kind: str, status, seconds: float) -> None:
        self.latency.setdefault(kind, []).append(seconds)
        self.status.setdefault(kind, Counter())[str(status)] += 1


async def _healthz(client: httpx.AsyncClient, log: Log, deadline: float) -> None:
    while time.monotonic() < deadline:
        await log.call("healthz", lambda: client.get("/healthz"))


async def _uploader(client: httpx.AsyncClient, log: Log, deadline: float, index: int,
                    uploads: dict[str, dict[str, bytes]], checker: str) -> None:
    rng = random.Random(SEED + index)
    kinds = list(uploads)
    n = 0
    while time.monotonic() < deadline:
        kind = rng.choice(kinds)
        photo = rng.choice(list(uploads[kind]))
        name = f"{photo}-u{index:02d}-{n:06d}.jpg"
        n += 1
        enqueue = kind != "check_block"
        headers = {"Authorization": f"Bearer {checker}", "X-Filename": name, "Content-Type": "image/jpeg"}
        response = await log.call(kind, lambda: client.post("/v1/check", params={"enqueue": "true"} if enqueue else None,
                                                            content=uploads[kind][photo], headers=headers))
        body = response.json() if response is not None and response.status_code in (200, 422) else {}
        log.checks.append({"name": name, "kind": kind, "photo": photo, "enqueue": enqueue,
                           "status": None if response is None else response.status_code,
                           "verdict": body.get("verdict"),
                           "allowlisted": any(r.get("rule") == "allowlist.known_false_positive"
                                              for r in body.get("reasons", []))})


async def _moderator(client: httpx.AsyncClient, log: Log, deadline: float, index: int, secret: str) -> None:
    rng = random.Random(SEED + 1000 + index)
    me = f"mod-{index:02d}"
    auth = {"Authorization": f"Bearer {secret}"}
    while time.monotonic() < deadline:
        listed = await log.call("queue_list", lambda: client.get("/v1/queue", params={"limit": 10}, headers=auth))
        items = listed.json() if listed is not None and listed.status_code == 200 else []
        if not items:
            await asyncio.sleep(EMPTY_QUEUE_PAUSE)
            continue
        item = items[0] if rng.random() < 0.5 else rng.choice(items[:3])
        item_id = item["id"]
        claimed = await log.call("claim", lambda: client.post(f"/v1/queue/{item_id}/claim", headers=auth))
        status = None if claimed is None else claimed.status_code
        log.claims.append({"item": item_id, "moderator": me, "status": status})
        if time.monotonic() >= deadline:
            break
        if status == 200:
            why = "own claim"
        elif status == 409 and rng.random() < LOSER_DECIDES:
            why = "lost claim"
        else:
            continue
        rejected = item["source"].startswith(f"{REJECTED_PHOTO}-")
        spec = {"decision": "reject" if rejected else "confirm", "note": f"load {me}"}
        if not rejected and rng.random() < CONFIRM_TO_BANK:
            spec["bank"] = REVIEW_BANK
        attempts = 2 if why == "own claim" and rng.random() < WINNER_DECIDES_AGAIN else 1
        for attempt in range(attempts):
            decided = await log.call("decide", lambda: client.post(f"/v1/queue/{item_id}/decide", json=spec,
                                                                   headers=auth))
            record = {"item": item_id, "moderator": me, "decision": spec["decision"], "bank": spec.get("bank"),
                      "status": None if decided is None else decided.status_code,
                      "why": why if attempt == 0 else "second decide"}
            if decided is not None and decided.status_code not in (200, 409):
                record["body"] = decided.text[:300]
            log.decides.append(record)


async def _phase(base_url: str, seconds: float, workers: list) -> tuple[Log, float, bool]:
    """Run the clients until the deadline; (log, wall seconds, finished by itself).

    Each client has its own `httpx.AsyncClient` with one connection: 32 requests in flight through
    one shared pool make httpx itself the bottleneck (encode/httpx#3215), a third of the rate here.
    """
    log = Log()

    async def client(worker, deadline: float) -> None:
        async with httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=1),
                                     timeout=REQUEST_TIMEOUT, trust_env=False) as http:
            await worker(http, log, deadline)

    start = time.perf_counter()
    deadline = time.monotonic() + seconds
    tasks = [asyncio.ensure_future(client(worker, deadline)) for worker in workers]
    done, pending = await asyncio.wait(tasks, timeout=seconds + REQUEST_TIMEOUT + 30)
    for task in pending:
        task.cancel()
    wall = time.perf_counter() - start
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    return log, wall, not pending


def _measured(pid: int, base_url: str, seconds: float, workers: list) -> tuple[Log, float, bool, dict]:
    """`_phase` with the CPU the server and this process spent meanwhile, in cores (CPU s / wall s)."""
    server, client, wall = _cpu_seconds(pid), time.process_time(), time.perf_counter()
    log, phase_wall, finished = asyncio.run(_phase(base_url, seconds, workers))
    wall = time.perf_counter() - wall
    cpu = {"server_cores": (_cpu_seconds(pid) - server) / wall, "client_cores": (time.process_time() - client) / wall}
    return log, phase_wall, finished, cpu


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- after the run ----------------------------------------------------------------------------------


def _database_state(data_dir: Path) -> dict:
    db = sqlite3.connect(f"file:{data_dir / 'moderate.sqlite3'}?mode=ro", uri=True)
    items = [dict(zip(("id", "source", "status", "decision", "decided_by"), row)) for row in db.execute(
        "SELECT id, source, status, decision, decided_by FROM review_items ORDER BY id")]
    db.close()
    return {"items": items}


def _audit(data_dir: Path) -> dict:
    cli = moderate_script()
    _, verify = run([cli, "--data-dir", str(data_dir), "audit", "verify"], ok=(0, 1))
    _, export = run([cli, "--data-dir", str(data_dir), "audit", "export"], ok=(0, 1))
    entries = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    return {"verify_exit": verify.returncode, "verify_output": (verify.stdout + verify.stderr).strip(),
            "export_exit": export.returncode, "entries": entries}


def _banks(data_dir: Path) -> dict[str, int]:
    _, listed = run([moderate_script(), "--data-dir", str(data_dir), "bank", "list", "--json"])
    banks = json.loads(listed.stdout)
    return {b["name"]: b["references"] for b in banks}


def _tracebacks(stderr: str) -> dict:
    """Tracebacks in the server's stderr, grouped by their exception line."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in stderr.splitlines():
        bare = line.lstrip(" |+-")
        if current is None:
            if bare.startswith(("Traceback (most recent call last)", "Exception Group Traceback")):
                current = [line]
                blocks.append(current)
            continue
        if line and not line[0].isspace() and not line.startswith(("Traceback", "During handling", "The above")):
            if _EXCEPTION.match(line):
                current.append(line)
                current = None
            elif line.startswith(("INFO", "ERROR", "WARNING", "DEBUG")):
                current = None  # an exception group ends indented; the log goes on
            else:
                current.append(line)
            continue
        current.append(line)
    groups: dict[str, dict] = {}
    for block in blocks:
        summaries = [b.lstrip(" |+-") for b in block if _EXCEPTION.match(b.lstrip(" |+-"))]
        last = summaries[-1] if summaries else block[-1].strip()
        group = groups.setdefault(last[:300], {"count": 0, "first": "\n".join(block)})
        group["count"] += 1
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR")]
    return {"count": len(blocks), "by_exception": groups, "error_lines": errors[:50], "error_line_count": len(errors)}


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|ExceptionGroup|Exit|Interrupt)\b(:|$)")


def _integrity(log: Log, state: dict, audit: dict, banks_before: dict, banks_after: dict) -> dict:
    items = state["items"]
    answered = [c for c in log.checks if c["status"] in (200, 422)]
    unanswered = [c for c in log.checks if c["status"] not in (200, 422)]
    expected_items = Counter(c["name"] for c in answered if c["enqueue"] and c["verdict"] == "review")
    queued = Counter(i["source"] for i in items)
    a = {"expected": sum(expected_items.values()), "queued": len(items),
         "queued_twice": sorted(n for n, k in queued.items() if k > 1)[:20],
         "lost": sorted(set(expected_items) - set(queued))[:20],
         "unexpected": sorted(set(queued) - set(expected_items))[:20],
         "unanswered_checks": len(unanswered)}
    a["ok"] = a["expected"] == a["queued"] and not (a["queued_twice"] or a["lost"] or a["unexpected"])

    won = [d for d in log.decides if d["status"] == 200]
    won_ids = Counter(d["item"] for d in won)
    decided = {i["id"]: i for i in items if i["status"] == "decided"}
    mismatched = [d["item"] for d in won if d["item"] in decided and (
        decided[d["item"]]["decided_by"] != d["moderator"] or decided[d["item"]]["decision"] != d["decision"])]
    b = {"decides_200": len(won), "decided_items": len(decided),
         "won_twice": sorted(i for i, k in won_ids.items() if k > 1)[:20],
         "decided_without_200": sorted(set(decided) - set(won_ids))[:20],
         "200_not_decided": sorted(set(won_ids) - set(decided))[:20],
         "wrong_moderator_or_decision": mismatched[:20],
         "second_decides_not_409": sum(1 for d in log.decides if d["why"] == "second decide" and d["status"] != 409),
         "lost_claim_decides_not_409": sum(1 for d in log.decides if d["why"] == "lost claim" and d["status"] != 409),
         "own_claim_decides_not_200": Counter(str(d["status"]) for d in log.decides
                                              if d["why"] == "own claim" and d["status"] != 200)}
    b["ok"] = (b["decides_200"] == b["decided_items"] and not (b["won_twice"] or b["decided_without_200"]
               or b["200_not_decided"] or b["wrong_moderator_or_decision"]) and not b["second_decides_not_409"]
               and not b["lost_claim_decides_not_409"])

    entries = audit["entries"]
    verdicts = Counter(e["detail"].get("source") for e in entries if e["kind"] == "verdict")
    decisions = Counter(e["detail"].get("item") for e in entries if e["kind"] == "decision")
    names = Counter(c["name"] for c in answered)
    c = {"verify_exit": audit["verify_exit"], "verify_output": audit["verify_output"],
         "entries": len(entries), "kinds": dict(Counter(e["kind"] for e in entries)),
         "verdict_entries": sum(verdicts.values()), "answered_checks": len(answered),
         "verdict_entries_twice": sorted(n for n, k in verdicts.items() if k > 1)[:20],
         "checks_without_entry": sorted(set(names) - set(verdicts))[:20],
         "entries_without_answer": sorted(str(n) for n in set(verdicts) - set(names))[:20],
         "decision_entries": sum(decisions.values()), "decision_items_twice": sorted(
             i for i, k in decisions.items() if k > 1)[:20],
         "decision_entries_without_200": sorted(set(decisions) - set(won_ids))[:20],
         "decides_200_without_entry": sorted(set(won_ids) - set(decisions))[:20],
         "decided_items_without_entry": sorted(set(decided) - set(decisions))}
    c["verify_ok"] = audit["verify_exit"] == 0 and "intact" in audit["verify_output"]
    c["verdicts_ok"] = (c["verdict_entries"] == c["answered_checks"] and not c["verdict_entries_twice"]
                        and not c["checks_without_entry"] and not c["entries_without_answer"])
    c["decisions_ok"] = (c["decision_entries"] == len(won) and not c["decision_items_twice"]
                         and not c["decision_entries_without_200"] and not c["decides_200_without_entry"])

    rejects = sum(1 for d in won if d["decision"] == "reject")
    to_bank = sum(1 for d in won if d["decision"] == "confirm" and d["bank"])
    d = {"rejects_200": rejects, "allowlist_references": banks_after.get("ALLOWLIST", 0),
         "confirms_to_bank_200": to_bank,
         "review_bank_growth": banks_after.get(REVIEW_BANK, 0) - banks_before.get(REVIEW_BANK, 0)}
    d["ok"] = d["allowlist_references"] == rejects and d["review_bank_growth"] == to_bank
    return {"a": a, "b": b, "c": c, "d": d}


# -- the section ------------------------------------------------------------------------------------


def run_section(scale: Scale) -> Section:
    seconds = scale.load_seconds
    baseline_seconds = BASELINE_SECONDS.get(scale.name, 15)
    OUT.mkdir(parents=True, exist_ok=True)
    stderr_path, stdout_path = OUT / "load-server.stderr.log", OUT / "load-server.stdout.log"
    with tempfile.TemporaryDirectory(prefix="moderate-bench-") as tmp:
        folder = Path(tmp)
        data_dir, uploads, checker, moderators = _prepare(folder)
        banks_before = _banks(data_dir)
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = _start_server(data_dir, port, out, err)
            try:
                started = _proc_status(proc.pid)
                health, health_wall, health_ok, health_cpu = _measured(
                    proc.pid, base_url, baseline_seconds, [_healthz] * CLIENTS)
                after_health = _proc_status(proc.pid)
                load, load_wall, load_ok, load_cpu = _measured(proc.pid, base_url, seconds, [
                    *(functools.partial(_uploader, index=i, uploads=uploads, checker=checker) for i in range(UPLOADERS)),
                    *(functools.partial(_moderator, index=i, secret=moderators[i]) for i in range(MODERATORS))])
                memory = _proc_status(proc.pid)
            finally:
                exit_code = _stop_server(proc)
        stderr = stderr_path.read_text(errors="replace")
        access_5xx = Counter(re.sub(r"/\d+/", "/{id}/", m.group(1)) for m in re.finditer(r'"([A-Z]+ /\S*?)(?:\?\S*)? HTTP/[\d.]+" 5\d\d',
                                                            stdout_path.read_text(errors="replace")))
        state = _database_state(data_dir)
        audit = _audit(data_dir)
        banks_after = _banks(data_dir)
    integrity = _integrity(load, state, audit, banks_before, banks_after)
    tracebacks = _tracebacks(stderr)
    data = {
        "clients": CLIENTS, "uploaders": UPLOADERS, "moderators": MODERATORS,
        "load_seconds": seconds, "load_wall_s": load_wall, "load_finished_by_itself": load_ok,
        "baseline_seconds": baseline_seconds, "baseline_wall_s": health_wall, "baseline_finished_by_itself": health_ok,
        "baseline": _kind_stats(health, health_wall),
        "kinds": {kind: _kind_stats(load, load_wall, kind) for kind in KINDS},
        "all": {"requests": sum(len(v) for v in load.latency.values()),
                "per_s": sum(len(v) for v in load.latency.values()) / load_wall,
                "status": dict(sum(load.status.values(), Counter()))},
        "verdicts": {kind: dict(Counter(c["verdict"] or f"no verdict (HTTP {c['status']})"
                                        for c in load.checks if c["kind"] == kind))
                     for kind in EXPECTED_VERDICT},
        "allowlisted_checks": dict(Counter(c["photo"] for c in load.checks if c["allowlisted"])),
        "claims": dict(Counter(str(c["status"]) for c in load.claims)),
        "decides": {why: dict(Counter(str(d["status"]) for d in load.decides if d["why"] == why))
                    for why in ("own claim", "lost claim", "second decide")},
        "queue_end": dict(Counter(i["status"] for i in state["items"])),
        "decisions_end": dict(Counter(i["decision"] for i in state["items"] if i["decision"])),
        "cpu_cores": {"baseline": health_cpu, "load": load_cpu, "machine": os.cpu_count()},
        "memory": {"started": started, "after_healthz": after_health, "end": memory},
        "server_exit": exit_code,
        "integrity": {k: {kk: vv for kk, vv in v.items()} for k, v in integrity.items()},
        "unexpected_bodies": load.bodies + health.bodies,
        "failed_decides": [d for d in load.decides if d["status"] not in (200, 409)],
        "access_log_5xx": access_5xx,
        "server_stderr": {"path": str(stderr_path), **tracebacks},
        "banks_before": banks_before, "banks_after": banks_after,
    }
    _print_problems(data)
    return Section("load", _rows(data), data)


def _kind_stats(log: Log, wall: float, kind: str = "healthz") -> dict:
    latencies = log.latency.get(kind, [])
    stats = {"requests": len(latencies), "per_s": len(latencies) / wall, "status": dict(log.status.get(kind, {}))}
    if latencies:
        stats.update(percentiles_ms(latencies))
    return stats


def _print_problems(data: dict) -> None:
    """Server tracebacks and unexpected answers, printed as the section ends (the JSON keeps them all)."""
    tb = data["server_stderr"]
    if tb["count"]:
        print(f"[bench] load: {tb['count']} traceback(s) in the server's stderr ({tb['path']}):", flush=True)
        for last, group in tb["by_exception"].items():
            print(f"--- {group['count']} x {last}\n{group['first']}\n---", flush=True)
    for body in data["unexpected_bodies"][:10]:
        print(f"[bench] load: unexpected {body['status']} on {body['kind']}: {body['body']}", flush=True)


def _codes(status: dict) -> str:
    return ", ".join(f"{code}: {count}" for code, count in sorted(status.items()))


def _latency(stats: dict) -> str:
    if not stats["requests"]:
        return "no requests"
    return f"{fmt_rate(stats['per_s'], 'req/s')}, p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms"


def _mb(value: int) -> str:
    return f"{value / 2**20:,.0f} MB"


def _rows(data: dict) -> list[Row]:
    S = "load"
    base, every, integrity, cpu = data["baseline"], data["all"], data["integrity"], data["cpu_cores"]
    status = every["status"]
    server_errors = sum(n for code, n in status.items() if code.isdigit() and int(code) >= 500)
    transport = sum(n for code, n in status.items() if not code.isdigit())
    unexpected_4xx = sum(n for code, n in status.items() if code.isdigit() and 400 <= int(code) < 500 and code != "409")
    rows = [
        Row(S, f"GET /healthz, {data['clients']} clients, {data['baseline_seconds']} s", _latency(base),
            "(the server's floor)", "", "no 5xx", not any(int(c) >= 500 for c in base["status"] if c.isdigit())),
        Row(S, f"all requests, {data['clients']} clients, {data['load_seconds']} s "
               f"({data['uploaders']} upload, {data['moderators']} moderator)",
            fmt_rate(every["per_s"], "req/s"), f"healthz {fmt_rate(base['per_s'], 'req/s')}",
            fmt_ratio(every["per_s"] / base["per_s"]) if base["per_s"] else "", "stops by itself",
            data["load_finished_by_itself"]),
    ]
    for kind, label in KINDS.items():
        stats = data["kinds"][kind]
        rows.append(Row(S, f"  {label}", _latency(stats), f"healthz p50 {base.get('p50_ms', 0):.1f} ms",
                        fmt_ratio(base["p50_ms"] / stats["p50_ms"]) if stats.get("p50_ms") and base.get("p50_ms") else ""))
    for kind, verdicts in data["verdicts"].items():
        allowlisted = sum(data["allowlisted_checks"].values()) if kind == "check_review" else 0
        extra = f" ({allowlisted} allow-listed after a reject)" if allowlisted else ""
        rows.append(Row(S, f"  verdicts, {KINDS[kind].split(', ')[1]}", _codes(verdicts) + extra,
                        f"expected {EXPECTED_VERDICT[kind]}"))
    rows += [
        Row(S, "status codes, all requests", _codes(status), "409 = lost race", "", "no 5xx", server_errors == 0),
        Row(S, "  other 4xx, transport errors", f"{unexpected_4xx}, {transport}", "", "", "none",
            unexpected_4xx == 0 and transport == 0),
        Row(S, "  claims", _codes(data["claims"]), "409 = lost claim race"),
        Row(S, "  decides after own claim", _codes(data["decides"]["own claim"]), "", "", "all 200",
            set(data["decides"]["own claim"]) <= {"200"}),
        Row(S, "  decides after lost claim / second decide",
            f"{_codes(data['decides']['lost claim']) or '-'} / {_codes(data['decides']['second decide']) or '-'}",
            "", "", "all 409", set(data["decides"]["lost claim"]) | set(data["decides"]["second decide"]) <= {"409"}),
        Row(S, "server tracebacks in stderr", str(data["server_stderr"]["count"]),
            f"ERROR lines {data['server_stderr']['error_line_count']}", "", "none", data["server_stderr"]["count"] == 0),
        Row(S, "  5xx lines in the access log", str(sum(data["access_log_5xx"].values())),
            _codes(data["access_log_5xx"]), "", "none", not data["access_log_5xx"]),
        Row(S, "CPU busy, server / bench client",
            f"{cpu['load']['server_cores']:.2f} / {cpu['load']['client_cores']:.2f} cores",
            f"healthz {cpu['baseline']['server_cores']:.2f} / {cpu['baseline']['client_cores']:.2f} cores",
            "", f"({cpu['machine']} cpus)"),
        Row(S, "server peak RSS (VmHWM)", _mb(data["memory"]["end"]["VmHWM"]),
            f"after start-up {_mb(data['memory']['started']['VmRSS'])}, after healthz "
            f"{_mb(data['memory']['after_healthz']['VmHWM'])}"),
        Row(S, "queue at the end", _codes(data["queue_end"]), _codes(data["decisions_end"])),
    ]
    a, b, c, d = integrity["a"], integrity["b"], integrity["c"], integrity["d"]
    rows += [
        Row(S, "(a) review items = enqueueing checks with review", f"{a['queued']} = {a['expected']}",
            f"lost {len(a['lost'])}, twice {len(a['queued_twice'])}, unexpected {len(a['unexpected'])}", "",
            "equal, by name", a["ok"]),
        Row(S, "(b) 200 decides = decided items", f"{b['decides_200']} = {b['decided_items']}",
            f"decided twice {len(b['won_twice'])}, decided w/o 200 {len(b['decided_without_200'])}, "
            f"200 not decided {len(b['200_not_decided'])}", "", "equal, once each", b["ok"]),
        Row(S, "(c) moderate audit verify", c["verify_output"].splitlines()[-1] if c["verify_output"] else "",
            f"exit {c['verify_exit']}", "", "intact", c["verify_ok"]),
        Row(S, "(c) audit verdict entries = answered checks", f"{c['verdict_entries']} = {c['answered_checks']}",
            f"twice {len(c['verdict_entries_twice'])}, missing {len(c['checks_without_entry'])}", "",
            "equal, by name", c["verdicts_ok"]),
        Row(S, "(c) audit decision entries = 200 decides", f"{c['decision_entries']} = {b['decides_200']}",
            f"twice {len(c['decision_items_twice'])}, w/o 200 {len(c['decision_entries_without_200'])}, "
            f"missing {len(c['decides_200_without_entry'])}", "", "equal, by item", c["decisions_ok"]),
        Row(S, "(c) decided items without a decision entry", str(len(c["decided_items_without_entry"])),
            f"of {b['decided_items']} decided", "", "0", not c["decided_items_without_entry"]),
        Row(S, "(d) ALLOWLIST refs = 200 rejects; review bank growth = 200 confirms+bank",
            f"{d['allowlist_references']} = {d['rejects_200']}; {d['review_bank_growth']} = {d['confirms_to_bank_200']}",
            "", "", "equal", d["ok"]),
    ]
    return rows
