"""Webhooks to a real local receiver: signed, retried after a failure, never blocking the verdict."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time

import httpx
import pytest

from standardwebhooks import Webhook as StandardWebhook

from moderate import Engine, Policy, PolicyError
from moderate.sinks.webhooks import Deliveries, Outbox, Webhook, deliveries

from .conftest import free_port
from .test_api import serve_command, start, stop


def serve_hooks(answer):
    """A real local receiver on 127.0.0.1: `answer(headers, body)` gives each POST's status."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(answer(dict(self.headers), body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


@pytest.fixture
def receiver():
    got: list[dict] = []

    def answer(headers, body):
        got.append({"headers": headers, "body": body})
        time.sleep(0.3)  # a slow receiver must not slow the check down
        return 500 if len(got) == 1 else 200  # the first delivery fails: retried

    server, url = serve_hooks(answer)
    yield url, got
    server.shutdown()


def test_block_verdict_is_delivered_signed_and_retried(banked, photos, receiver, monkeypatch):
    url, got = receiver
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    policy = Policy.from_mapping({"webhooks": [{"url": url, "on": ["block"], "secret_env": "HOOK_SECRET"}]})
    engine = Engine(banked.data_dir, policy=policy)
    start = time.perf_counter()
    assert engine.check(photos["astronaut"]).verdict == "block"
    assert engine.check(photos["chelsea"]).verdict == "allow"  # not subscribed: no delivery
    assert time.perf_counter() - start < 2.0
    assert deliveries(banked.data_dir).wait(30)
    assert len(got) == 2  # one failure, one retry of the same verdict
    final = got[-1]
    body = final["body"]
    assert json.loads(body)["reasons"][0]["reference_id"] == "astronaut"
    timestamp = final["headers"]["X-Moderate-Timestamp"]
    expected = "sha256=" + hmac.new(b"s3cret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert final["headers"]["X-Moderate-Signature"] == expected
    assert StandardWebhook(b"s3cret").verify(body, final["headers"])["verdict"] == "block"  # a standard verifier
    assert got[0]["headers"]["webhook-id"] == final["headers"]["webhook-id"]  # a retry is the same delivery
    (delivered,) = Outbox(banked.data_dir).list()
    assert (delivered.id, delivered.status, delivered.attempts) == (final["headers"]["webhook-id"], "delivered", 2)


def test_webhook_policy_mistakes_are_refused():
    with pytest.raises(PolicyError, match=r"webhooks\[0\].on: must be a list of verdicts"):
        Policy.from_mapping({"webhooks": [{"url": "https://x.example", "on": ["blok"]}]}, "p.yaml")
    with pytest.raises(PolicyError, match=r"webhooks\[0\].url: must be an http\(s\) URL"):
        Policy.from_mapping({"webhooks": [{"url": "ftp://x.example"}]}, "p.yaml")


def test_a_webhook_whose_secret_variable_is_unset_is_refused_at_load(tmp_path, monkeypatch, photos):
    from .conftest import run_cli

    monkeypatch.delenv("MODERATE_TEST_HOOK_SECRET", raising=False)
    path = tmp_path / "hooks.yaml"
    path.write_text("webhooks:\n  - url: https://hooks.example/x\n    secret_env: MODERATE_TEST_HOOK_SECRET\n")
    with pytest.raises(PolicyError, match=r"hooks.yaml: webhooks\[0\].secret_env: environment variable "
                                          r"MODERATE_TEST_HOOK_SECRET is not set"):
        Policy.load(path)
    monkeypatch.setenv("MODERATE_TEST_HOOK_SECRET", "")  # empty signs nothing either
    with pytest.raises(PolicyError, match="MODERATE_TEST_HOOK_SECRET is not set"):
        Policy.load(path)
    out = run_cli("check", str(photos["coins"]), "--policy", str(path), data_dir=tmp_path / "data")
    assert out.returncode == 1 and b"MODERATE_TEST_HOOK_SECRET is not set" in out.stderr
    monkeypatch.setenv("MODERATE_TEST_HOOK_SECRET", "s3cret")
    assert Policy.load(path).webhooks[0].secret_env == "MODERATE_TEST_HOOK_SECRET"


def test_a_secret_unset_after_loading_is_never_sent_unsigned(banked, photos, receiver, monkeypatch):
    url, got = receiver
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    policy = Policy.from_mapping({"webhooks": [{"url": url, "on": ["block"], "secret_env": "HOOK_SECRET"}]})
    monkeypatch.delenv("HOOK_SECRET")
    assert Engine(banked.data_dir, policy=policy).check(photos["astronaut"]).verdict == "block"
    assert deliveries(banked.data_dir).wait(30)
    assert got == []
    (failed,) = Outbox(banked.data_dir).list("failed")
    assert "HOOK_SECRET is not set" in failed.last_error


@pytest.fixture
def switchable_receiver():
    """A receiver that answers 503 until switched on, then 200; it verifies every signature."""
    state = {"up": False, "attempts": [], "accepted": []}
    verifier = StandardWebhook("whsec_" + base64.b64encode(b"outbox-secret").decode())

    def answer(headers, body):
        verifier.verify(body, headers)  # raises (no answer: a failed attempt) on a bad signature
        state["attempts"].append(headers["webhook-id"])
        if state["up"]:
            state["accepted"].append(headers["webhook-id"])
        return 200 if state["up"] else 503

    server, url = serve_hooks(answer)
    yield url, state
    server.shutdown()


def test_the_outbox_survives_a_killed_server(banked, photos, switchable_receiver, tmp_path):
    url, state = switchable_receiver
    policy = tmp_path / "hooks.yaml"
    policy.write_text(f"webhooks:\n  - url: {url}\n    \"on\": [block]\n    secret_env: OUTBOX_SECRET\n")
    env = {"OUTBOX_SECRET": "whsec_" + base64.b64encode(b"outbox-secret").decode()}
    from moderate.service.tokens import Tokens

    checker = {"Authorization": f"Bearer {Tokens(banked.data_dir).create('hooks', 'checker')}"}
    port = free_port()
    command = serve_command(port) + ["--policy", str(policy)]
    server = start(command, banked.data_dir, port, env)
    for name in ("astronaut", "rocket", "coffee"):
        checked = httpx.post(f"http://127.0.0.1:{port}/v1/check", content=photos[name].read_bytes(), headers=checker,
                             timeout=60)
        assert checked.json()["verdict"] == "block"
    deadline = time.monotonic() + 30
    while len(set(state["attempts"])) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    server.kill()  # SIGKILL: no exit handlers, the sender thread dies mid-backoff
    server.wait(timeout=20)
    outbox = Outbox(banked.data_dir)
    pending = {d.id for d in outbox.list("pending")}
    assert len(pending) == 3 and pending == set(state["attempts"])

    state["up"] = True
    server = start(command, banked.data_dir, port, env)  # the restart drains the outbox
    try:
        deadline = time.monotonic() + 60
        while outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sorted(state["accepted"]) == sorted(pending)  # every delivery, exactly once by delivery id
        assert {d.id for d in outbox.list("delivered")} == pending
        assert 'moderate_webhook_failed_attempts_total' in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        stop(server)


def test_failed_deliveries_are_listed_and_retried(tmp_path, switchable_receiver):
    url, state = switchable_receiver
    sender = Deliveries(tmp_path, backoff=0.05)
    secret = "whsec_" + base64.b64encode(b"outbox-secret").decode()
    import os

    os.environ["RETRY_TEST_SECRET"] = secret
    try:
        delivery_id = sender.send(Webhook(url, secret_env="RETRY_TEST_SECRET", attempts=2), {"verdict": "block"})
        assert sender.wait(30)
        (failed,) = sender.outbox.list("failed")
        assert (failed.id, failed.attempts, failed.last_error) == (delivery_id, 2, "HTTP 503")
        assert sender.outbox.stats() == {"pending": 0, "delivered": 0, "failed": 1, "failed_attempts": 2}
        state["up"] = True
        assert sender.retry(["msg_unknown"]) == []
        assert sender.retry() == [delivery_id]
        assert sender.wait(30)
        assert [d.status for d in sender.outbox.list()] == ["delivered"] and state["accepted"] == [delivery_id]
    finally:
        del os.environ["RETRY_TEST_SECRET"]
