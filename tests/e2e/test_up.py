"""`collectq up` as a user runs it: embedded Redis, API, workers; driven over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.e2e
COLLECTQ = str(Path(sys.executable).parent / "collectq")


def _env(api_port: int, redis_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTQ_")}
    env |= {"COLLECTQ_API_PORT": str(api_port), "COLLECTQ_EMBEDDED_REDIS_PORT": str(redis_port)}
    env |= {"COLLECTQ_REAP_INTERVAL": "1"}  # beat ticks the reaper within the test
    # Flower and the API's metrics listener on free ports too
    env |= {"COLLECTQ_FLOWER_PORT": str(free_port()), "COLLECTQ_METRICS_PORT": str(free_port())}
    return env


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except OSError:
        return 0, b""


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_serves_a_job_end_to_end_and_stops_cleanly(tmp_path, httpserver) -> None:
    httpserver.expect_request("/page").respond_with_data(
        "<title>hi</title>", content_type="text/html"
    )
    api_port, redis_port = free_port(), free_port()
    env = _env(api_port, redis_port)
    base, flower = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{env['COLLECTQ_FLOWER_PORT']}"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([COLLECTQ, "up"], cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        wait_for(lambda: _get(f"{base}/health")[0] == 200, timeout=60, interval=0.2)
        # the banner comes once the API and Flower answer
        wait_for(lambda: "collectq up: ready" in log.read_text(), timeout=60, interval=0.2)
        status, page = _get(f"{flower}/tasks")  # open: dev profile, loopback
        assert status == 200
        assert b"Flower" in page
        # each worker node has a metrics listener of its own
        logs = tmp_path / ".collectq" / "logs"
        found = re.search(
            r"metrics on (http://127\.0\.0\.1:\d+/metrics)", (logs / "worker-http.log").read_text()
        )
        assert found
        assert _get(found.group(1))[0] == 200
        wait_for(
            lambda: (
                b"collect.http" in _get(f"{base}/v1/status")[1]
                and json.loads(_get(f"{base}/v1/status")[1])["queues"]["collect.http"]["workers"]
            ),
            timeout=60,
            interval=0.3,
        )
        req = urllib.request.Request(
            f"{base}/v1/jobs",
            data=json.dumps(
                {"target": httpserver.url_for("/page"), "collectors": ["http"]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
            location = resp.headers["Location"]
        status, body = _get(f"{base}{location}?wait=20")
        envelope = json.loads(body)
        assert status == 200
        assert envelope["status"] == "succeeded", envelope
        assert envelope["results"]["http"]["data"]["status_code"] == 200
        assert _get(f"{base}{location}/artifacts/http.body") == (200, b"<title>hi</title>")
        assert (tmp_path / ".collectq").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    output = log.read_text()
    assert code == 0, output
    _assert_reads_well(output, tmp_path / ".collectq" / "logs", base, flower)
    assert f"  metrics    http://127.0.0.1:{env['COLLECTQ_METRICS_PORT']}/metrics (API)" in output
    assert f"embedded Redis on 127.0.0.1:{redis_port}" in output
    assert "DEV PROFILE" in output
    assert output.count("AUTH IS OFF") == 1  # the quick start runs open on loopback, said once
    assert not _port_open(api_port)
    assert not _port_open(redis_port)


def _assert_reads_well(output: str, logs: Path, api: str, flower: str) -> None:
    """One short banner on the terminal; each process's output in its own log file."""
    start = output.split("collectq up: stopping")[0].splitlines()
    assert len(start) < 25, output  # was about 180 lines (banners, warnings per process)
    banner = output.split("collectq up: ready")[1]
    for name, url in [("API", api), ("docs", f"{api}/docs"), ("Flower", flower)]:
        assert re.search(rf"^  {name} +{re.escape(url)}\b", banner, re.M), banner
    assert "superuser privileges" not in output  # said once in the banner, when root
    assert "[tasks]" not in output  # no Celery banner
    assert "Warning" not in output  # e.g. gevent's ssl MonkeyPatchWarning at each API worker start
    for role in ["api", "worker-http", "worker-maintenance", "beat", "flower", "redis"]:
        assert (logs / f"{role}.log").stat().st_size > 0, role
    assert "collect.http@" in (logs / "worker-http.log").read_text()
    assert "Task maintenance.reap[" in (logs / "worker-maintenance.log").read_text()  # beat ticks


@contextmanager
def _up_with_auth(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """`collectq up` with COLLECTQ_AUTH=on in `tmp_path`: (API base URL, Redis port, log).
    Stopped with SIGTERM afterwards; the exit code must be 0."""
    api_port, redis_port = free_port(), free_port()
    env = _env(api_port, redis_port) | {"COLLECTQ_AUTH": "on"}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([COLLECTQ, "up"], cwd=tmp_path, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(lambda: "collectq up: ready" in log.read_text(), timeout=60, interval=0.2)
        yield base, redis_port, log
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(45)
    assert code == 0, log.read_text()


def test_up_refuses_a_taken_port(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [COLLECTQ, "up"],
            cwd=tmp_path,
            env=_env(port, free_port()),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use (set COLLECTQ_API_PORT)" in result.stderr


def test_readme_auth_walkthrough_reaches_the_embedded_redis(tmp_path, httpserver) -> None:
    """README, Authentication: `COLLECTQ_AUTH=on` up keeps auth on (401 without a key), then
    `collectq keys create` from another shell in the same directory (no COLLECTQ_*
    variables), then a job with that key."""
    httpserver.expect_request("/").respond_with_data("ok")
    with _up_with_auth(tmp_path) as (base, redis_port, log):
        try:
            urllib.request.urlopen(f"{base}/v1/jobs", timeout=10)
            keyless = 200
        except urllib.error.HTTPError as err:
            keyless = err.code
        assert keyless == 401
        assert "AUTH IS OFF" not in log.read_text()
        assert re.search(r"^  auth +on: API keys required", log.read_text(), re.M)
        shell = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTQ_")}
        created = subprocess.run(
            [COLLECTQ, "keys", "create", "--owner", "ops", "--name", "bootstrap",
             "--scope", "admin", "-q"],
            cwd=tmp_path, env=shell, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert token.startswith("cq_")
        req = urllib.request.Request(
            f"{base}/v1/jobs",
            data=json.dumps({"target": httpserver.url_for("/"), "collectors": ["http"]}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == 202
        checked = subprocess.run(
            [COLLECTQ, "config", "check"], cwd=tmp_path, env=shell, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["COLLECTQ_REDIS_URL"].endswith(f":{redis_port}/0")
    assert not (tmp_path / ".collectq" / "run.json").exists()  # removed at stop
