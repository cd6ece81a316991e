"""Webhooks: POST verdicts to other systems, signed, retried, and never in the verdict's way.

A policy lists webhooks (`url`, the verdicts they want, and the environment variable holding the
shared secret). A check only writes the delivery to an *outbox* table in the data folder's SQLite
(`moderate.sinks.database`); a background thread sends it. So a delivery outlives the process that
made it: whichever process next drains the outbox (a server, the next CLI call, or
`moderate webhooks retry`) sends what is still pending. Delivery is at least once: a process killed
between the receiver's 200 and the outbox update sends it again with the same id, so receivers
deduplicate on `webhook-id`.

Each delivery is signed twice, under the secret from `secret_env` (read at send time, never stored):
- Standard Webhooks (https://www.standardwebhooks.com): `webhook-id` (the delivery id),
  `webhook-timestamp`, `webhook-signature: v1,BASE64`, made by the `standardwebhooks` package, so a
  receiver can verify with any Standard Webhooks library. A secret starting `whsec_` is base64 as
  that spec defines; any other secret is used as raw bytes.
- the original scheme, kept for existing receivers: `X-Moderate-Timestamp` and
  `X-Moderate-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY`.

Failed attempts back off exponentially with full jitter (receivers that went down together do not
come back to a thundering herd); after `attempts` tries a delivery is `failed` and stays listed
until retried. Failures are logged (URL and delivery id, never the body), never raised.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .database import Database

log = logging.getLogger("moderate.webhooks")  # log channel names are stable for operators

STATUSES = ("pending", "delivered", "failed")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS webhook_outbox (id TEXT PRIMARY KEY, url TEXT NOT NULL, secret_env TEXT,"
    " body BLOB NOT NULL, created_ts REAL NOT NULL, status TEXT NOT NULL DEFAULT 'pending',"
    " attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, next_ts REAL NOT NULL,"
    " lease_until REAL NOT NULL DEFAULT 0, last_error TEXT, delivered_ts REAL)",
    "CREATE INDEX IF NOT EXISTS webhook_due ON webhook_outbox (status, next_ts)",
)


@dataclass(frozen=True)
class Webhook:
    url: str
    on: tuple[str, ...] = ("block", "review")
    secret_env: str | None = None
    attempts: int = 5


@dataclass(frozen=True)
class Delivery:
    """One outbox row (the body is not part of it: listings must not carry verdicts around)."""

    id: str
    url: str
    status: str
    attempts: int
    max_attempts: int
    created_at: str
    next_attempt_at: str | None
    last_error: str | None
    delivered_at: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The original `X-Moderate-Signature` value."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def standard_headers(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for one attempt (the package does the signing)."""
    from standardwebhooks import Webhook as StandardWebhook

    key = StandardWebhook(secret) if secret.startswith("whsec_") else StandardWebhook(secret.encode())
    signature = key.sign(delivery_id, datetime.fromtimestamp(timestamp, timezone.utc), body.decode())
    return {"webhook-id": delivery_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def backoff_delay(base: float, attempt: int, cap: float = 600.0) -> float:
    """Full jitter: uniform in [0, base * 2**attempt], capped; never below a tenth of the base."""
    return max(base / 10, random.uniform(0, min(cap, base * 2 ** attempt)))


class Outbox(Database):
    """The data folder's webhook outbox: what to send, and what became of each delivery."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        super().__init__(self.data_dir, SCHEMA)

    def add(self, hook: Webhook, payload: dict) -> str:
        delivery_id = "msg_" + secrets.token_hex(12)
        body = json.dumps(payload, separators=(",", ":")).encode()
        now = time.time()
        self.db.execute("INSERT INTO webhook_outbox (id, url, secret_env, body, created_ts, max_attempts, next_ts)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", (delivery_id, hook.url, hook.secret_env, body, now,
                                                          hook.attempts, now))
        return delivery_id

    def lease(self, seconds: float) -> sqlite3.Row | None:
        """Take the next due delivery for `seconds` (one statement: two processes never take one row)."""
        now = time.time()
        return self.db.execute(
            "UPDATE webhook_outbox SET lease_until = ? WHERE id = (SELECT id FROM webhook_outbox"
            " WHERE status = 'pending' AND next_ts <= ? AND lease_until < ? ORDER BY next_ts LIMIT 1)"
            " RETURNING id, url, secret_env, body, attempts, max_attempts", (now + seconds, now, now)).fetchone()

    def delivered(self, delivery_id: str) -> None:
        self.db.execute("UPDATE webhook_outbox SET status = 'delivered', attempts = attempts + 1, delivered_ts = ?,"
                        " last_error = NULL, lease_until = 0 WHERE id = ?", (time.time(), delivery_id))

    def attempt_failed(self, delivery_id: str, problem: str, retry_in: float | None) -> None:
        """Count a failed attempt; `retry_in` None gives up (the delivery is `failed`)."""
        status = "pending" if retry_in is not None else "failed"
        self.db.execute("UPDATE webhook_outbox SET status = ?, attempts = attempts + 1, last_error = ?, next_ts = ?,"
                        " lease_until = 0 WHERE id = ?", (status, problem[:300], time.time() + (retry_in or 0),
                                                          delivery_id))

    def pending(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'pending'").fetchone()[0]

    def pending_ids(self, ids: set[str]) -> set[str]:
        """Those of `ids` still pending."""
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        return {r[0] for r in self.db.execute(
            f"SELECT id FROM webhook_outbox WHERE status = 'pending' AND id IN ({marks})", tuple(ids))}

    def list(self, status: str | None = None, limit: int = 100) -> list[Delivery]:
        """Deliveries, newest first (`status` one of STATUSES, or None for all)."""
        where, args = ("status = ?", (status,)) if status else ("1", ())
        rows = self.db.execute(f"SELECT * FROM webhook_outbox WHERE {where} ORDER BY created_ts DESC LIMIT ?",
                               (*args, limit)).fetchall()
        return [Delivery(r["id"], r["url"], r["status"], r["attempts"], r["max_attempts"], _iso(r["created_ts"]),
                         _iso(r["next_ts"]) if r["status"] == "pending" else None, r["last_error"],
                         _iso(r["delivered_ts"]) if r["delivered_ts"] else None) for r in rows]

    def retry(self, delivery_ids: list[str] | None = None) -> list[str]:
        """Make failed deliveries (those named, or all) pending again with a fresh set of attempts."""
        named = f" AND id IN ({','.join('?' * len(delivery_ids))})" if delivery_ids else ""
        rows = self.db.execute(f"UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_ts = ?"
                               f" WHERE status = 'failed'{named} RETURNING id", (time.time(), *(delivery_ids or ())))
        return sorted(row[0] for row in rows)

    def stats(self) -> dict:
        """Deliveries by status and failed attempts so far (what /metrics exports)."""
        counts = dict(self.db.execute("SELECT status, COUNT(*) FROM webhook_outbox GROUP BY status").fetchall())
        failed_attempts = self.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN status = 'delivered' THEN attempts - 1 ELSE attempts END), 0)"
            " FROM webhook_outbox").fetchone()[0]
        return {**{s: counts.get(s, 0) for s in STATUSES}, "failed_attempts": failed_attempts}


class Deliveries:
    """One process's sender over one outbox; `wait()` lets a short-lived process drain it."""

    def __init__(self, data_dir: Path, backoff: float = 0.5, timeout: float = 10.0, exit_wait: float = 15.0):
        self.outbox = Outbox(data_dir)
        self.backoff, self.timeout = backoff, timeout
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.sent: set[str] = set()  # this process's deliveries: what `wait` waits for
        atexit.register(self.wait, exit_wait)

    def send(self, hook: Webhook, payload: dict) -> str:
        """Put a delivery in the outbox and make sure a sender runs; returns the delivery id."""
        delivery_id = self.outbox.add(hook, payload)
        self.sent.add(delivery_id)
        self.start()
        return delivery_id

    def start(self) -> None:
        """Start the sender (also to drain what earlier processes left in the outbox)."""
        self.wake.set()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="moderate-webhooks", daemon=True)
                self.thread.start()

    def retry(self, delivery_ids: list[str] | None = None) -> list[str]:
        """`moderate webhooks retry`: failed deliveries (those named, or all) pending again, sent by
        this process's sender (`wait` waits for them too); returns their ids."""
        retried = self.outbox.retry(delivery_ids)
        self.sent.update(retried)
        self.start()
        return retried

    def wait(self, seconds: float = 15.0) -> bool:
        """Wait until this process's deliveries were sent or given up; False on timeout (what is
        left stays in the outbox for the next process)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.sent &= self.outbox.pending_ids(self.sent)
            except Exception:  # the data folder went away (a test's temporary folder at exit)
                return True
            if not self.sent:
                return True
            self.start()
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        import httpx

        idle_since = time.monotonic()
        with httpx.Client(timeout=self.timeout, trust_env=False, follow_redirects=False) as client:
            while True:
                try:
                    row = self.outbox.lease(self.timeout * 3)
                    if row is None and time.monotonic() - idle_since > 30 and not self.outbox.pending():
                        return  # nothing left to send or retry; the next send starts a sender again
                except Exception as exc:
                    log.error("webhook outbox %s: %s", self.outbox.data_dir, exc)
                    return
                if row is None:
                    self.wake.wait(0.5)  # retries come due while we wait; a new send wakes us early
                    self.wake.clear()
                    continue
                idle_since = time.monotonic()
                self._deliver(client, row)

    def _deliver(self, client, row) -> None:
        delivery_id, url, attempt = row["id"], row["url"], row["attempts"] + 1
        secret = os.environ.get(row["secret_env"] or "", "")
        if row["secret_env"] and not secret:  # unset since the policy was loaded: never send it unsigned
            log.error("webhook %s (%s): environment variable %s is not set: not sent", url, delivery_id,
                      row["secret_env"])
            self.outbox.attempt_failed(delivery_id, f"environment variable {row['secret_env']} is not set", None)
            return
        body = bytes(row["body"])
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "X-Moderate-Timestamp": str(timestamp),
                   "webhook-id": delivery_id, "webhook-timestamp": str(timestamp)}
        if secret:
            headers.update(standard_headers(secret, delivery_id, timestamp, body))
            headers["X-Moderate-Signature"] = sign(secret.encode(), str(timestamp), body)
        try:
            response = client.post(url, content=body, headers=headers)
            if response.status_code < 300:
                self.outbox.delivered(delivery_id)
                return
            problem = f"HTTP {response.status_code}"
        except Exception as exc:  # network errors of every kind: log and retry
            problem = f"{type(exc).__name__}: {exc}"
        retry = attempt < row["max_attempts"]
        log.warning("webhook %s (%s) attempt %d/%d failed: %s", url, delivery_id, attempt, row["max_attempts"], problem)
        if not retry:
            log.error("webhook %s (%s): gave up after %d attempts", url, delivery_id, attempt)
        self.outbox.attempt_failed(delivery_id, problem, backoff_delay(self.backoff, attempt - 1) if retry else None)


_DELIVERIES: dict[Path, Deliveries] = {}
_LOCK = threading.Lock()


def deliveries(data_dir: Path) -> Deliveries:
    """The process's sender for a data folder's outbox, made on first use."""
    with _LOCK:
        key = Path(data_dir).resolve()
        if key not in _DELIVERIES:
            _DELIVERIES[key] = Deliveries(key)
        return _DELIVERIES[key]


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None
