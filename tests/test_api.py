"""The HTTP API served by a real `moderate serve` process on 127.0.0.1, called over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import httpx
import pytest

from moderate.tokens import Tokens

from .conftest import BIN, free_port


@pytest.fixture
def api(banked):
    tokens = Tokens(banked.data_dir)
    secrets = {role: tokens.create(f"{role}-1", role) for role in ("checker", "moderator", "admin")}
    port = free_port()
    env = {**os.environ, "MODERATE_HOME": str(banked.data_dir)}
    process = subprocess.Popen(
        [str(BIN / "moderate"), "serve", "--host", "127.0.0.1", "--port", str(port), "--max-body", "2000000",
         "--rate-limit", "40"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            time.sleep(0.2)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    yield client, {role: {"Authorization": f"Bearer {secret}"} for role, secret in secrets.items()}
    client.close()
    process.terminate()
    process.wait(timeout=20)


def test_check_multipart_raw_and_auth(api, photos, edited):
    client, auth = api
    assert client.get("/healthz").json()["status"] == "ok"
    flagged = edited[0][2].read_bytes()
    response = client.post("/v1/check", files={"file": ("meme.jpg", flagged, "image/jpeg")}, headers=auth["checker"])
    assert response.status_code == 200
    verdict = response.json()
    assert (verdict["verdict"], verdict["source"]) == ("block", "meme.jpg")
    assert verdict["reasons"][0]["reference_id"] == "astronaut"
    raw = client.post("/v1/check", content=photos["chelsea"].read_bytes(), headers={**auth["checker"], "X-Filename": "cat.png"})
    assert raw.json()["verdict"] == "allow" and raw.json()["source"] == "cat.png"

    assert client.post("/v1/check", content=flagged).status_code == 401
    assert client.post("/v1/check", content=flagged, headers={"Authorization": "Bearer mod_wrong"}).status_code == 401
    assert client.post("/v1/banks", json={"name": "X"}, headers=auth["checker"]).status_code == 403
    assert client.post("/v1/banks", json={"name": "X"}, headers=auth["moderator"]).status_code == 403


def test_invalid_inputs_body_cap_and_url_rules(api):
    client, auth = api
    broken = client.post("/v1/check", content=b"\x89PNG\r\n\x1a\nbroken", headers=auth["checker"])
    assert broken.status_code == 422
    assert broken.json()["error_code"] in ("corrupt", "truncated", "unsupported_format")
    assert broken.json()["verdict"] == "review"  # fail closed for callers that read only the verdict
    too_big = client.post("/v1/check", content=b"\0" * 2_500_000, headers=auth["checker"])
    assert too_big.status_code == 413 and too_big.json()["error_code"] == "too_large"

    def chunks():
        for _ in range(30):
            yield b"\0" * 100_000

    streamed = client.post("/v1/check", content=chunks(), headers=auth["checker"])  # no Content-Length
    assert streamed.status_code == 413
    blocked = client.post("/v1/check", json={"url": "http://169.254.169.254/latest/meta-data"}, headers=auth["checker"])
    assert blocked.status_code == 422 and blocked.json()["error_code"] == "url_blocked"
    path = client.post("/v1/check", json={"url": "/etc/passwd"}, headers=auth["checker"])
    assert path.status_code == 400


def test_bank_routes_and_openapi(api, photos):
    client, auth = api
    assert client.post("/v1/banks", json={"name": "SPAM", "action": "review"}, headers=auth["admin"]).status_code == 200
    listed = client.get("/v1/banks", headers=auth["checker"]).json()
    assert {b["name"] for b in listed} == {"TERROR", "SPAM"}
    bad = client.post("/v1/banks/SPAM/import", content=b"pdq 123\n", headers=auth["admin"])
    assert bad.status_code == 400 and bad.json()["problems"][0]["line"] == 1
    hashes = "".join(f"pdq {i:064x}\n" for i in range(1, 6))
    ok = client.post("/v1/banks/SPAM/import", content=hashes.encode(), headers=auth["admin"])
    assert ok.json()["imported"] == 5
    exported = client.get("/v1/banks/SPAM/export?format=txt", headers=auth["admin"])
    assert exported.text.count("\n") == 5
    added = client.post("/v1/banks/SPAM/references", files={"file": ("cat.png", photos["chelsea"].read_bytes())},
                        data={"id": "cat-1", "note": "from the API"}, headers=auth["admin"])
    assert added.status_code == 200 and added.json()["reference_id"] == "cat-1"
    assert client.post("/v1/check", content=photos["chelsea"].read_bytes(), headers=auth["checker"]).json()["verdict"] == "review"
    assert client.post("/v1/banks/SPAM/references", files={"file": ("x.png", b"not an image")},
                       headers=auth["admin"]).status_code == 400
    assert client.post("/v1/banks/TERROR/disable", headers=auth["admin"]).json()["enabled"] is False
    after = client.post("/v1/check", content=photos["astronaut"].read_bytes(), headers=auth["checker"])
    assert after.json()["verdict"] == "allow"
    assert client.post("/v1/banks/NOPE/enable", headers=auth["admin"]).status_code == 404
    spec = client.get("/openapi.json").json()
    assert "/v1/check" in spec["paths"] and "/v1/banks/{name}/import" in spec["paths"]


def test_rate_limit_per_token(api, photos):
    client, auth = api
    tiny = photos["coins"].read_bytes()
    codes = [client.post("/v1/check", content=tiny, headers=auth["moderator"]).status_code for _ in range(42)]
    assert codes.count(429) >= 1 and codes[0] == 200
    assert client.post("/v1/check", content=tiny, headers=auth["checker"]).status_code == 200  # other token


def test_queue_routes_and_race_free_decisions(api, banked, photos, tmp_path):
    client, auth = api
    banked.banks.create("SPAM", action="review")  # written by another process: the server sees it
    banked.banks.add("SPAM", [photos["chelsea"]])
    checked = client.post("/v1/check?enqueue=true", content=photos["chelsea"].read_bytes(),
                          headers={**auth["checker"], "X-Filename": "cat.png"}).json()
    assert checked["verdict"] == "review"
    assert client.get("/v1/queue", headers=auth["checker"]).status_code == 403
    (item,) = client.get("/v1/queue", headers=auth["moderator"]).json()
    assert client.get(f"/v1/queue/{item['id']}/image?thumbnail=true", headers=auth["moderator"]).content[:4] == b"\x89PNG"
    assert client.post(f"/v1/queue/{item['id']}/claim", headers=auth["moderator"]).status_code == 200
    assert client.post(f"/v1/queue/{item['id']}/claim", headers=auth["admin"]).status_code == 409
    decided = client.post(f"/v1/queue/{item['id']}/decide", json={"decision": "reject"}, headers=auth["moderator"])
    assert decided.status_code == 200 and decided.json()["decided_by"] == "moderator-1"
    again = client.post(f"/v1/queue/{item['id']}/decide", json={"decision": "confirm"}, headers=auth["moderator"])
    assert again.status_code == 409
    assert client.get("/v1/queue/999", headers=auth["moderator"]).status_code == 404
