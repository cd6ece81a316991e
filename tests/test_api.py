"""The HTTP API served by a real `moderate serve` process on 127.0.0.1, called over real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import httpx
import pytest

from moderate import Engine
from moderate.service.tokens import Tokens

from .conftest import BIN, free_port


def start(command: list[str], data_dir, port: int, env: dict | None = None) -> subprocess.Popen:
    """A server process for `data_dir`, once it listens on `port` (its stderr is kept for failures)."""
    full_env = {**os.environ, "MODERATE_HOME": str(data_dir), **(env or {})}
    process = subprocess.Popen(command, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no server on port {port} within 60 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


def serve_command(port: int, *options: str) -> list[str]:
    return [str(BIN / "moderate"), *options, "serve", "--host", "127.0.0.1", "--port", str(port)]


def role_tokens(data_dir) -> dict[str, dict]:
    tokens = Tokens(data_dir)
    return {role: {"Authorization": f"Bearer {tokens.create(f'{role}-1', role)}"}
            for role in ("checker", "moderator", "admin")}


@pytest.fixture
def api(banked):
    auth = role_tokens(banked.data_dir)
    port = free_port()
    process = start(serve_command(port) + ["--max-body", "2000000", "--rate-limit", "40"], banked.data_dir, port)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    yield client, auth
    client.close()
    stop(process)


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
    assert broken.status_code == 200  # a verdict like any other: a client ignoring 4xx must not store it
    assert broken.json()["error_code"] in ("corrupt", "truncated", "unsupported_format")
    assert broken.json()["verdict"] == "review" and broken.json()["error"]
    too_big = client.post("/v1/check", content=b"\0" * 2_500_000, headers=auth["checker"])
    assert too_big.status_code == 413 and too_big.json()["error_code"] == "too_large"
    assert too_big.json()["verdict"] == "review"

    def chunks():
        for _ in range(30):
            yield b"\0" * 100_000

    streamed = client.post("/v1/check", content=chunks(), headers=auth["checker"])  # no Content-Length
    assert streamed.status_code == 413
    blocked = client.post("/v1/check", json={"url": "http://169.254.169.254/latest/meta-data"}, headers=auth["checker"])
    assert blocked.status_code == 200 and blocked.json()["error_code"] == "url_blocked"
    assert blocked.json()["verdict"] == "review"
    path = client.post("/v1/check", json={"url": "/etc/passwd"}, headers=auth["checker"])
    assert path.status_code == 400 and path.json()["verdict"] == "review"


def test_an_undecodable_upload_is_queued_with_its_bytes(api, photos):
    client, auth = api
    crafted = photos["coins"].read_bytes()[:300]
    checked = client.post("/v1/check?enqueue=true", content=crafted, headers={**auth["checker"], "X-Filename": "x.png"})
    assert checked.status_code == 200 and checked.json()["sha256"] == hashlib.sha256(crafted).hexdigest()
    (item,) = client.get("/v1/queue", headers=auth["moderator"]).json()
    assert item["sha256"] == checked.json()["sha256"] and item["has_image"]
    assert client.get(f"/v1/queue/{item['id']}/image", headers=auth["moderator"]).content == crafted
    assert client.post(f"/v1/queue/{item['id']}/claim", headers=auth["moderator"]).status_code == 200
    decided = client.post(f"/v1/queue/{item['id']}/decide", json={"decision": "reject"}, headers=auth["moderator"])
    assert decided.status_code == 200 and decided.json()["decision"] == "reject"


def test_two_file_parts_are_refused_not_half_checked(api, photos, edited):
    client, auth = api
    flagged, benign = edited[0][2].read_bytes(), photos["chelsea"].read_bytes()
    both = client.post("/v1/check", files=[("file", ("a.jpg", flagged)), ("file", ("b.png", benign))],
                       headers=auth["checker"])
    assert both.status_code == 400 and both.json()["verdict"] == "review"
    assert both.json()["error"] == "multipart field 'file' is sent more than once: send one input per request"
    other = client.post("/v1/check", files=[("file", ("b.png", benign)), ("image", ("a.jpg", flagged))],
                        headers=auth["checker"])
    assert other.status_code == 400 and "unknown multipart field 'image'" in other.json()["error"]
    as_text = client.post("/v1/check", data={"file": "not a file"}, files=[("x", ("a", b"x"))], headers=auth["checker"])
    assert as_text.status_code == 400
    urls = client.post("/v1/check", content=b'{"url": "https://a.example/1.jpg", "url": "https://b.example/2.jpg"}',
                       headers={**auth["checker"], "Content-Type": "application/json"})
    assert urls.status_code == 400 and "key 'url' appears more than once" in urls.json()["error"]
    twice = client.post("/v1/check?enqueue=false&enqueue=true", content=benign, headers=auth["checker"])
    assert twice.status_code == 400 and "'enqueue' is given more than once" in twice.json()["error"]
    ids = client.post("/v1/banks/TERROR/references", files=[("file", ("c.png", benign))],
                      data={"id": ["cat-1", "cat-2"]}, headers=auth["admin"])
    assert ids.status_code == 400 and "'id' is sent more than once" in ids.json()["error"]
    files = client.post("/v1/banks/TERROR/references", files=[("file", ("c.png", benign)), ("file", ("a.jpg", flagged))],
                        headers=auth["admin"])
    assert files.status_code == 400
    assert client.get("/v1/banks/TERROR/export?format=txt", headers=auth["admin"]).text.count("\n") == 4  # nothing added


def test_malformed_requests_get_4xx_json_never_500(api):
    client, auth = api
    deep = b"[" * 100_000
    cases = [
        ("post", "/v1/check", {"content": deep, "headers": {"Content-Type": "application/json"}}, auth["checker"]),
        ("post", "/v1/check", {"content": b'{"url": 5}', "headers": {"Content-Type": "application/json"}}, auth["checker"]),
        ("post", "/v1/check", {"content": b"\xff\xfe{", "headers": {"Content-Type": "application/json"}}, auth["checker"]),
        ("post", "/v1/check", {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}}, auth["checker"]),
        ("post", "/v1/check?enqueue=maybe", {"content": b"x"}, auth["checker"]),
        ("post", "/v1/banks", {"content": deep}, auth["admin"]),
        ("post", "/v1/banks", {"json": []}, auth["admin"]),
        ("post", "/v1/banks", {"json": {"name": "X", "acton": "review"}}, auth["admin"]),
        ("post", "/v1/queue/1/decide", {"content": deep}, auth["moderator"]),
        ("post", "/v1/queue/1/decide", {"json": {"decision": 1}}, auth["moderator"]),
        ("get", "/v1/queue/abc", {}, auth["moderator"]),
        ("post", f"/v1/queue/{10**30}/claim", {}, auth["moderator"]),  # past SQLite's integers
        ("get", f"/v1/queue?limit={10**30}", {}, auth["moderator"]),
        ("get", "/v1/queue?status=bogus", {}, auth["moderator"]),
        ("get", "/v1/nowhere", {}, auth["moderator"]),
        ("delete", "/v1/check", {}, auth["checker"]),
    ]
    for method, url, kwargs, headers in cases:
        response = client.request(method.upper(), url, **{**kwargs, "headers": {**kwargs.get("headers", {}), **headers}})
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:200])
        assert response.headers["content-type"] == "application/json", (url, response.text[:200])
        body = response.json()
        assert isinstance(body["error"], str) and "\n" not in body["error"] and len(body["error"]) < 400, (url, body)
        if url.startswith("/v1/check"):
            assert body["verdict"] == "review", url
    assert "nested too deeply" in client.post("/v1/check", content=deep, headers={
        **auth["checker"], "Content-Type": "application/json"}).json()["error"]


def test_a_server_with_nothing_to_check_against_answers_an_error_not_allow(api, photos):
    client, auth = api
    assert client.post("/v1/banks/TERROR/disable", headers=auth["admin"]).json()["enabled"] is False
    response = client.post("/v1/check", content=photos["astronaut"].read_bytes(), headers=auth["checker"])
    assert response.status_code == 503 and response.json()["verdict"] == "review"
    assert "nothing to check against" in response.json()["error"]


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


def test_bank_and_reference_routes_with_roles_and_errors(api, banked, photos):
    client, auth = api
    assert client.get("/v1/banks/TERROR", headers=auth["checker"]).json()["references"] == 4
    assert client.get("/v1/banks/NOPE", headers=auth["checker"]).status_code == 404
    page = client.get("/v1/banks/TERROR/references?limit=3", headers=auth["moderator"]).json()
    assert (page["total"], len(page["references"])) == (4, 3)
    rest = client.get("/v1/banks/TERROR/references?offset=3&limit=3", headers=auth["moderator"]).json()
    ids = [r["id"] for r in page["references"] + rest["references"]]
    assert ids == sorted(["astronaut", "set2/coffee", "rocket", "set2/motorcycle"])  # each once, by id
    assert client.get("/v1/banks/TERROR/references", headers=auth["checker"]).status_code == 403
    assert client.get("/v1/banks/NOPE/references", headers=auth["moderator"]).status_code == 404
    assert client.get("/v1/banks/TERROR/references?limit=0", headers=auth["moderator"]).status_code == 400

    one = client.get("/v1/banks/TERROR/references/set2/coffee", headers=auth["moderator"])
    assert one.status_code == 200 and one.json()["metadata"]["note"] == "case 17" and len(one.json()["pdq"][0]) == 64
    assert client.get("/v1/banks/TERROR/references/nothing", headers=auth["moderator"]).status_code == 404
    assert client.delete("/v1/banks/TERROR/references/set2/coffee", headers=auth["moderator"]).status_code == 403
    deleted = client.delete("/v1/banks/TERROR/references/set2/coffee", headers=auth["admin"])
    assert deleted.status_code == 200 and deleted.json()["hashes_removed"] >= 1
    assert client.get("/v1/banks/TERROR/references/set2/coffee", headers=auth["moderator"]).status_code == 404
    assert client.delete("/v1/banks/TERROR/references/set2/coffee", headers=auth["admin"]).status_code == 404
    assert client.post("/v1/check", content=photos["coffee"].read_bytes(), headers=auth["checker"]).json()["verdict"] == "allow"

    assert client.post("/v1/banks", json={"name": "OLD", "action": "review"}, headers=auth["admin"]).status_code == 200
    assert client.delete("/v1/banks/OLD", headers=auth["checker"]).status_code == 403
    gone = client.delete("/v1/banks/OLD", headers=auth["admin"])
    assert gone.status_code == 200 and gone.json() == {"bank": "OLD", "reference_id": None, "hashes_removed": 0}
    assert client.get("/v1/banks/OLD", headers=auth["checker"]).status_code == 404
    assert client.delete("/v1/banks/OLD", headers=auth["admin"]).status_code == 404


def test_rename_a_bank(api, banked, photos):
    client, auth = api
    assert client.patch("/v1/banks/TERROR", json={"name": "EXTREMISM"}, headers=auth["moderator"]).status_code == 403
    assert client.patch("/v1/banks/TERROR", json={"nam": "X"}, headers=auth["admin"]).status_code == 400
    renamed = client.patch("/v1/banks/TERROR", json={"name": "EXTREMISM"}, headers=auth["admin"])
    assert renamed.status_code == 200 and renamed.json()["name"] == "EXTREMISM" and renamed.json()["references"] == 4
    assert client.get("/v1/banks/TERROR", headers=auth["checker"]).status_code == 404
    verdict = client.post("/v1/check", content=photos["rocket"].read_bytes(), headers=auth["checker"]).json()
    assert verdict["reasons"][0]["bank"] == "EXTREMISM"


def test_batch_check_gives_a_verdict_per_file(api, photos, edited):
    client, auth = api
    files = [("files", ("meme.jpg", edited[0][2].read_bytes())), ("files", ("cat.png", photos["chelsea"].read_bytes())),
             ("files", ("broken.png", b"\x89PNG\r\n\x1a\nbroken"))]
    batch = client.post("/v1/check/batch", files=files, headers=auth["checker"])
    assert batch.status_code == 200
    body = batch.json()
    assert [(r["source"], r["verdict"]) for r in body["results"]] == [
        ("meme.jpg", "block"), ("cat.png", "allow"), ("broken.png", "review")]
    assert body["verdict"] == "block" and body["results"][2]["error_code"]
    assert client.post("/v1/check/batch", files=files, headers=auth["admin"]).status_code == 200  # roles nest
    assert client.post("/v1/check/batch", files=files).status_code == 401
    for bad in ([("file", ("a.png", b"x"))], [("files", ("a.png", b"x"))] * 40):
        refused = client.post("/v1/check/batch", files=bad, headers=auth["checker"])
        assert refused.status_code == 400 and refused.json()["verdict"] == "review", refused.text
    text = client.post("/v1/check/batch", data={"files": "x"}, files=[("files", ("a.png", b"x"))], headers=auth["checker"])
    assert text.status_code == 400
    raw = client.post("/v1/check/batch", content=b"x", headers=auth["checker"])
    assert raw.status_code == 400 and "multipart" in raw.json()["error"]


def test_readyz_and_metrics(api, banked, photos):
    client, auth = api
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["index_hashes"] > 0
    client.post("/v1/check", content=photos["astronaut"].read_bytes(), headers=auth["checker"])
    client.post("/v1/check", content=photos["chelsea"].read_bytes(), headers=auth["checker"])
    text = client.get("/metrics").text
    assert 'moderate_checks_total{verdict="block"} 1.0' in text and 'moderate_checks_total{verdict="allow"} 1.0' in text
    assert 'moderate_check_evidence_total{signal="digest",verdict="block"} 1.0' in text  # the flagged file itself
    assert 'moderate_check_seconds_count{route="check"} 2.0' in text
    assert 'moderate_queue_items{state="open"} 0.0' in text and "moderate_index_hashes " in text
    assert "moderate_index_age_seconds " in text and 'moderate_webhook_deliveries{status="failed"} 0.0' in text
    assert "moderate_webhook_failed_attempts_total 0.0" in text


@pytest.fixture
def chroma_proxy(chroma_server):
    """A TCP relay to the real Chroma server that the test can cut (the store going away)."""
    target = chroma_server.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    open_sockets, cut = [], threading.Event()

    def pipe(source, sink):
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def accept():
        while not cut.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if cut.is_set():
                client.close()
                return
            upstream = socket.create_connection((target[0].split("//")[1], int(target[1])), timeout=10)
            open_sockets.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    def down():
        cut.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone may not)
        except OSError:
            pass
        listener.close()
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    yield f"http://127.0.0.1:{listener.getsockname()[1]}", down
    down()


def test_readyz_says_unready_when_the_store_is_gone(chroma_server, chroma_proxy, tmp_path, photos):
    url, cut = chroma_proxy
    engine = Engine(tmp_path / "data", chroma_url=url)
    bank = f"R{uuid.uuid4().hex[:8]}"
    engine.banks.create(bank, action="block")
    engine.banks.add(bank, [photos["rocket"]])
    port = free_port()
    process = start(serve_command(port, "--chroma-url", url), engine.data_dir, port, {"MODERATE_CHROMA_TIMEOUT": "2"})
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).json()["status"] == "ready"
        cut()
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["status"] == "unready"
        assert url in ready.json()["error"] and "\n" not in ready.json()["error"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200  # alive, not ready
    finally:
        stop(process)
        Engine(tmp_path / "cleanup", chroma_url=chroma_server).banks.delete(bank)  # the server is shared


def test_release_and_who_holds_a_claim(api, banked, photos):
    client, auth = api
    banked.banks.create("SPAM", action="review")
    banked.banks.add("SPAM", [photos["chelsea"]])
    client.post("/v1/check?enqueue=true", content=photos["chelsea"].read_bytes(), headers=auth["checker"])
    (item,) = client.get("/v1/queue", headers=auth["moderator"]).json()
    assert item["priority_reason"].startswith("PDQ distance 0 of 256 bits to SPAM/chelsea")
    assert client.get(f"/v1/queue/{item['id']}", headers=auth["moderator"]).json()["status"] == "open"  # viewing
    assert client.post(f"/v1/queue/{item['id']}/release", headers=auth["moderator"]).status_code == 409
    assert client.post(f"/v1/queue/{item['id']}/claim", headers=auth["moderator"]).status_code == 200
    taken = client.post(f"/v1/queue/{item['id']}/decide", json={"decision": "reject"}, headers=auth["admin"])
    assert taken.status_code == 409 and "moderator-1 until" in taken.json()["error"] and "UTC" in taken.json()["error"]
    assert client.post(f"/v1/queue/{item['id']}/release", headers=auth["admin"]).status_code == 409
    released = client.post(f"/v1/queue/{item['id']}/release", headers=auth["moderator"])
    assert released.status_code == 200 and released.json()["status"] == "open" and released.json()["claimed_by"] is None
    assert client.post(f"/v1/queue/{item['id']}/claim", headers=auth["admin"]).status_code == 200
    assert client.post("/v1/queue/999/release", headers=auth["moderator"]).status_code == 404


def test_openapi_types_every_route(api):
    client, _ = api
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert operation.get("summary") and operation.get("tags"), (method, path)
            ok = operation["responses"]["200"]["content"]
            if path not in ("/metrics",) and not path.endswith(("/export", "/image")):
                assert "$ref" in json.dumps(ok), (method, path)  # a named response schema
            if method in ("post", "patch") and not path.endswith(("/enable", "/disable", "/claim", "/release")):
                assert operation.get("requestBody"), (method, path)
    schemas = spec["components"]["schemas"]
    assert {"Verdict", "Reason", "Bank", "Reference", "ReferencePage", "ReviewItem", "Error", "BatchVerdicts"} <= set(schemas)
    assert spec["paths"]["/v1/check"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_two_servers_sharing_one_chroma_server_see_each_others_bank_changes(chroma_server, tmp_path, photos, edited):
    """The scale-out path: `moderate serve` hosts, each with its own data folder (tokens, derived
    index), share one `chroma run`; a bank change made through either is what the other checks
    against on its next request. Other tests' banks share the server: only this bank's reasons count."""
    bank = f"S{uuid.uuid4().hex[:8]}"
    hosts = []
    try:
        for name in ("a", "b"):
            port = free_port()
            auth = role_tokens(tmp_path / name)
            process = start(serve_command(port, "--chroma-url", chroma_server), tmp_path / name, port)
            hosts.append((process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60), auth))
        (_, a, auth_a), (_, b, auth_b) = hosts

        def ours(client, auth, picture) -> list[str]:
            verdict = client.post("/v1/check", content=picture.read_bytes(), headers=auth["checker"]).json()
            return sorted(r["rule"] for r in verdict["reasons"] if r.get("bank") == bank)

        for name in (bank, f"{bank}-stays"):  # the second stays enabled: checks go on when the first is off
            assert a.post("/v1/banks", json={"name": name}, headers=auth_a["admin"]).status_code == 200
        assert ours(b, auth_b, edited[0][2]) == []  # b derives its index while the bank is empty
        added = a.post(f"/v1/banks/{bank}/references", headers=auth_a["admin"], data={"id": "astro"},
                       files={"file": ("astronaut.png", photos["astronaut"].read_bytes(), "image/png")})
        assert added.status_code == 200, added.text
        assert "pdq.distance<=31" in ours(b, auth_b, edited[0][2])  # astronaut, JPEG q30

        chelsea = hashlib.md5(photos["chelsea"].read_bytes()).hexdigest()
        imported = b.post(f"/v1/banks/{bank}/import", content=f"md5 {chelsea}\n", headers=auth_b["admin"])
        assert imported.status_code == 200 and imported.json()["imported"] == 1
        assert ours(a, auth_a, photos["chelsea"]) == ["digest.exact"]

        assert b.post(f"/v1/banks/{bank}/disable", headers=auth_b["admin"]).status_code == 200
        assert ours(a, auth_a, photos["chelsea"]) == [] and ours(a, auth_a, edited[0][2]) == []
    finally:
        for process, client, _ in hosts:
            client.close()
            stop(process)
