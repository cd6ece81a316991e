"""Webhooks to a real local receiver: signed, retried after a failure, never blocking the verdict."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from moderate import Engine, Policy, PolicyError
from moderate.sinks.webhooks import deliveries


@pytest.fixture
def receiver():
    got: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append({"headers": dict(self.headers), "body": body})
            time.sleep(0.3)  # a slow receiver must not slow the check down
            self.send_response(500 if len(got) == 1 else 200)  # the first delivery fails: retried
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
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
    assert deliveries().wait(30)
    assert len(got) == 2  # one failure, one retry of the same verdict
    final = got[-1]
    body = final["body"]
    assert json.loads(body)["reasons"][0]["reference_id"] == "astronaut"
    timestamp = final["headers"]["X-Moderate-Timestamp"]
    expected = "sha256=" + hmac.new(b"s3cret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert final["headers"]["X-Moderate-Signature"] == expected


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
    assert deliveries().wait(30)
    assert got == []
