"""Webhooks: POST verdicts to other systems, signed, retried, and never in the verdict's way.

A policy lists webhooks (`url`, the verdicts they want, and the environment variable holding the
shared secret). Each delivery carries `X-Moderate-Timestamp` and
`X-Moderate-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` under the secret, so the
receiver can reject forged or replayed calls. Deliveries run on a background thread with
exponential backoff; a check only enqueues them. A short-lived process (the CLI) waits a bounded
time for pending deliveries at exit. Failures are logged, never raised.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("moderate.webhooks")  # log channel names are stable for operators


@dataclass(frozen=True)
class Webhook:
    url: str
    on: tuple[str, ...] = ("block", "review")
    secret_env: str | None = None
    attempts: int = 5


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Deliveries:
    """A background sender for one process; `wait()` lets a short-lived process drain it."""

    def __init__(self, backoff: float = 0.5, timeout: float = 10.0, exit_wait: float = 15.0):
        self.backoff, self.timeout = backoff, timeout
        self.pending: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        atexit.register(self.wait, exit_wait)

    def send(self, hook: Webhook, payload: dict) -> None:
        self.pending.put((hook, json.dumps(payload, separators=(",", ":")).encode()))
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="moderate-webhooks", daemon=True)
                self.thread.start()

    def wait(self, seconds: float = 15.0) -> bool:
        """Wait until every queued delivery finished (or gave up); False on timeout."""
        deadline = time.monotonic() + seconds
        while self.pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.pending.unfinished_tasks

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, trust_env=False, follow_redirects=False) as client:
            while True:
                try:
                    hook, body = self.pending.get(timeout=5)
                except queue.Empty:
                    return
                try:
                    self._deliver(client, hook, body)
                finally:
                    self.pending.task_done()

    def _deliver(self, client, hook: Webhook, body: bytes) -> None:
        secret = os.environ.get(hook.secret_env or "", "").encode()
        if hook.secret_env and not secret:  # unset since the policy was loaded: never send it unsigned
            log.error("webhook %s: environment variable %s is not set: not sent", hook.url, hook.secret_env)
            return
        for attempt in range(hook.attempts):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Moderate-Timestamp": timestamp}
            if secret:
                headers["X-Moderate-Signature"] = sign(secret, timestamp, body)
            try:
                response = client.post(hook.url, content=body, headers=headers)
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            except Exception as exc:  # network errors of every kind: log and retry
                problem = f"{type(exc).__name__}: {exc}"
            log.warning("webhook %s attempt %d/%d failed: %s", hook.url, attempt + 1, hook.attempts, problem)
            time.sleep(self.backoff * 2 ** attempt)
        log.error("webhook %s: gave up after %d attempts", hook.url, hook.attempts)


_DELIVERIES: Deliveries | None = None


def deliveries() -> Deliveries:
    """The process's sender, started on first use."""
    global _DELIVERIES
    if _DELIVERIES is None:
        _DELIVERIES = Deliveries()
    return _DELIVERIES
