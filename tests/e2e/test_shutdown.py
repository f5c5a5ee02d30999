"""Graceful shutdown of the API: SIGTERM lets in-flight requests finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from tests.conftest import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e


def _get(url: str, timeout: float = 30, token: str = "") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as resp:
            return resp.status, resp.read()
    except OSError:
        return 0, b""


def test_api_finishes_in_flight_requests_on_sigterm(make_app, service_env, tmp_path) -> None:
    app = make_app()
    token = app.config["TEST_API_KEY"]
    body = {"target": "example.org", "collectors": ["noop"]}
    job_id = app.test_client().post("/v1/jobs", json=body).json["id"]
    # no worker: the job stays queued, so ?wait= holds the request open
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, **service_env, "COLLECTQ_API_WORKERS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _get(f"{base}/health", 1)[0] == 200, timeout=30, interval=0.2)
        answer: list[tuple[int, bytes]] = []
        poll = threading.Thread(
            target=lambda: answer.append(_get(f"{base}/v1/jobs/{job_id}?wait=3", token=token))
        )
        poll.start()
        wait_for(lambda: b"GET /health" in (tmp_path / "api.log").read_bytes(), timeout=5)
        threading.Event().wait(0.5)  # the long poll is in flight now (it waits 3 s)
        api.send_signal(signal.SIGTERM)
        poll.join(30)
        assert api.wait(40) == 0
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
        log.close()
    status, raw = answer[0]
    assert status == 200, (tmp_path / "api.log").read_text()[-2000:]
    assert json.loads(raw)["status"] == "queued"
    assert _get(f"{base}/health", 1)[0] == 0  # and it is gone
