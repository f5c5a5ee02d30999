"""Rate limits shared by two real API processes (`collectq api` under gunicorn) through Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_URL, ROOT, free_port, wait_for

pytestmark = pytest.mark.integration
LIMIT, WINDOW = 6, 10


def _get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except OSError:
        return 0, {}, b""


@pytest.fixture
def two_apis(service_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[int, int, str]]:
    from app.auth.apikeys import KeyStore

    env = {**os.environ, **service_env, "COLLECTQ_API_WORKERS": "1", "COLLECTQ_API_THREADS": "4",
           "COLLECTQ_RATE_LIMIT_READ": f"{LIMIT} per {WINDOW} seconds"}  # fmt: skip
    ports = [free_port(), free_port()]
    procs, logs = [], []
    for port in ports:
        log = (tmp_path / f"api{port}.log").open("wb")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "api", "--bind", f"127.0.0.1:{port}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
    store = KeyStore(redis.Redis.from_url(REDIS_URL), service_env["COLLECTQ_REDIS_PREFIX"])
    _, token = store.create(owner="rl", name="rl", scopes=["jobs:read"])
    try:
        for port in ports:

            def up(p: int = port) -> bool:
                return _get(p, "/health")[0] == 200

            wait_for(up, timeout=30, interval=0.1)
        yield ports[0], ports[1], token
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        for log in logs:
            log.close()


def test_rate_limit_is_shared_by_two_api_processes(two_apis) -> None:
    port_a, port_b, token = two_apis
    sent = []
    for i in range(LIMIT + 4):
        port = (port_a, port_b)[i % 2]
        status, headers, body = _get(port, "/v1/jobs", token)
        sent.append((port, status, headers, body))
    passed = [s for s in sent if s[1] == 200]
    limited = [s for s in sent if s[1] == 429]
    retry_after = [int(s[2]["Retry-After"]) for s in limited]
    print(
        f"\nrate-limit run: limit {LIMIT} per {WINDOW} s, two API processes (ports {port_a}, "
        f"{port_b}), requests sent {len(sent)}, passed {len(passed)}, 429s {len(limited)}, "
        f"Retry-After {retry_after}"
    )
    assert len(passed) == LIMIT
    assert {s[0] for s in passed} == {port_a, port_b}
    assert len(limited) == 4
    assert {s[0] for s in limited} == {port_a, port_b}
    for _, _, headers, body in limited:
        assert headers["Content-Type"] == "application/problem+json"
        assert json.loads(body)["type"].endswith("/rate_limited")
        assert headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(headers["Retry-After"]) <= WINDOW
    # after Retry-After the bucket resets, on either process
    started = time.monotonic()
    wait_for(lambda: _get(port_b, "/v1/jobs", token)[0] == 200, timeout=WINDOW + 3, interval=0.5)
    print(f"reset after {time.monotonic() - started:.1f} s (Retry-After said {max(retry_after)})")
    assert time.monotonic() - started <= max(retry_after) + 1.5
