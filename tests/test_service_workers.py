"""`serve(workers=N)`: several processes on one socket, sharing the data folder and the store."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx

from .conftest import free_port
from .test_api import role_tokens, start, stop


def test_two_workers_answer_and_metrics_add_up(banked, photos, edited):
    auth = role_tokens(banked.data_dir)
    port = free_port()
    program = ("from moderate import Engine; from moderate.service.server import serve; "
               f"serve(Engine(), '127.0.0.1', {port}, workers=2)")
    server = start([sys.executable, "-c", program], banked.data_dir, port)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            verdicts = [client.post("/v1/check", content=path.read_bytes(), headers=auth["checker"]).json()["verdict"]
                        for _, _, path in edited[:6]]
            assert verdicts == ["block"] * 6
            assert client.post("/v1/check", content=photos["chelsea"].read_bytes(),
                               headers=auth["checker"]).json()["verdict"] == "allow"
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            workers = [pid for pid in children if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            assert len(workers) >= 2  # uvicorn's spawned workers (plus its resource tracker, not counted)
            # Whichever worker answers the scrape, it reports every worker's checks.
            for _ in range(4):
                text = client.get("/metrics").text
                block = float(re.search(r'moderate_checks_total\{verdict="block"\} ([\d.]+)', text).group(1))
                allow = float(re.search(r'moderate_checks_total\{verdict="allow"\} ([\d.]+)', text).group(1))
                assert (block, allow) == (6, 1)
            assert client.get("/readyz").json()["status"] == "ready"
    finally:
        stop(server)
