"""A live collectq for metrics tests: a gunicorn API and a worker node, each with its
metrics listener, on the real Redis and RabbitMQ (loopback only).

    with live_stack(vhost, tmp_path) as stack:
        job = stack.run_job(["noop"])          # submitted through the API, run by the worker
        text = stack.api_metrics()             # the API listener's exposition text
        text = stack.worker_metrics()          # the worker node's

`metrics_after_job(vhost, tmp_path)` does exactly that once and returns both texts (for
tests that only read metric names, e.g. the dashboards' queries).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.conftest import AMQP_BASE, FIXTURE_LIMITS, REDIS_URL, ROOT, Worker, free_port, wait_for
from tests.plugins import PLUGINS

__all__ = ["LiveStack", "deployment_env", "http", "live_stack", "metrics_after_job"]

WORKER_QUEUES = "collect.noop,collect.flaky,maintenance"


def deployment_env(vhost: str) -> dict[str, str]:
    """COLLECTQ_* of one isolated deployment (own key prefix; the run's vhost)."""
    return {
        "COLLECTQ_ENV": "test",
        "COLLECTQ_REDIS_URL": REDIS_URL,
        "COLLECTQ_BROKER_URL": f"{AMQP_BASE}/{vhost}",
        "COLLECTQ_REDIS_PREFIX": f"tm{uuid.uuid4().hex[:10]}:",
        "COLLECTQ_NET_ALLOW": "127.0.0.0/8,::1/128",
        "COLLECTQ_PLUGINS": PLUGINS,
        "COLLECTQ_RETRY_BACKOFF_BASE": "0.05",
        "COLLECTQ_RETRY_BACKOFF_MAX": "0.2",
        "COLLECTQ_PUBLISH_TIMEOUT": "3",
    }


def http(
    url: str, method: str = "GET", body: Any = None, token: str | None = None
) -> tuple[int, bytes]:
    """(status, body) of one request; status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def _clean_environ() -> dict[str, str]:
    """This process's environment without the shell's collectq or metrics settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if k != "PROMETHEUS_MULTIPROC_DIR"
        and (not k.startswith("COLLECTQ_") or k.startswith("COLLECTQ_TEST_"))
    }


@dataclass
class LiveStack:
    env: dict[str, str]
    api_port: int
    metrics_port: int
    worker_metrics_port: int
    token: str
    api_proc: subprocess.Popen[bytes]
    worker: Worker
    api_log: Path
    jobs: list[str] = field(default_factory=list)

    def api(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        status, raw = http(f"http://127.0.0.1:{self.api_port}{path}", method, body, self.token)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def submit(self, collectors: list[str], options: dict[str, Any] | None = None) -> str:
        body = {"target": "http://127.0.0.1/", "collectors": collectors, "options": options or {}}
        status, envelope = self.api("/v1/jobs", "POST", body)
        assert status == 202, envelope
        self.jobs.append(envelope["id"])
        return str(envelope["id"])

    def wait(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        terminal = {"succeeded", "partial", "failed", "cancelled", "expired"}

        def done() -> Any:
            status, env = self.api(f"/v1/jobs/{job_id}?wait=5")
            return env if status == 200 and env["status"] in terminal else None

        return dict(wait_for(done, timeout=timeout, interval=0.05))

    def run_job(self, collectors: list[str], options: dict[str, Any] | None = None) -> dict:
        return self.wait(self.submit(collectors, options))

    def api_metrics(self) -> str:
        return _scrape(self.metrics_port)

    def worker_metrics(self) -> str:
        return _scrape(self.worker_metrics_port)


def _scrape(port: int) -> str:
    status, body = http(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, f"no /metrics on 127.0.0.1:{port} ({status})"
    return body.decode()


@contextmanager
def live_stack(
    vhost: str, tmp_path: Path, *, api_workers: int = 2, queues: str = WORKER_QUEUES
) -> Iterator[LiveStack]:
    """Start the API (gunicorn, `api_workers` processes) and one worker node; stop both."""
    from app.auth.apikeys import KeyStore

    env = deployment_env(vhost)
    ports = {
        "COLLECTQ_METRICS_PORT": free_port(),
        "COLLECTQ_WORKER_METRICS_PORT": free_port(),
        "api": free_port(),
    }
    env.update(
        COLLECTQ_API_WORKERS=str(api_workers),
        COLLECTQ_API_THREADS="4",
        COLLECTQ_METRICS_HOST="127.0.0.1",
        COLLECTQ_METRICS_PORT=str(ports["COLLECTQ_METRICS_PORT"]),
        COLLECTQ_WORKER_METRICS_PORT=str(ports["COLLECTQ_WORKER_METRICS_PORT"]),
        COLLECTQ_METRICS_DIR=str(tmp_path / "metrics"),
    )
    client = redis.Redis.from_url(REDIS_URL)
    _, token = KeyStore(client, env["COLLECTQ_REDIS_PREFIX"]).create(
        owner="metrics", name="metrics", scopes=["admin"], rate_limits=FIXTURE_LIMITS
    )
    api_log = tmp_path / "api.log"
    with api_log.open("wb") as log:
        api_proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--bind", f"127.0.0.1:{ports['api']}"],
            cwd=ROOT,
            env={**_clean_environ(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = None
    try:
        worker = Worker(env, queues, tmp_path / "worker.log", concurrency=2)
        stack = LiveStack(
            env,
            ports["api"],
            ports["COLLECTQ_METRICS_PORT"],
            ports["COLLECTQ_WORKER_METRICS_PORT"],
            token,
            api_proc,
            worker,
            api_log,
        )

        def api_up() -> bool:
            if api_proc.poll() is not None:
                raise AssertionError(f"API exited: {api_log.read_text()[-3000:]}")
            return http(f"http://127.0.0.1:{ports['api']}/health")[0] == 200

        wait_for(api_up, timeout=30, interval=0.1)
        wait_for(lambda: http(f"http://127.0.0.1:{stack.metrics_port}/metrics")[0] == 200, 10)
        yield stack
    finally:
        if worker is not None:
            worker.stop()
        api_proc.terminate()
        try:
            api_proc.wait(30)
        except subprocess.TimeoutExpired:
            api_proc.kill()
            api_proc.wait()
        keys = list(client.scan_iter(f"{env['COLLECTQ_REDIS_PREFIX']}*", count=1000))
        if keys:
            client.delete(*keys)


def metrics_after_job(vhost: str, tmp_path: Path) -> dict[str, str]:
    """Start a live stack, run one noop job through it, return both listeners' texts
    (``{"api": …, "worker": …}``); everything is stopped again on return."""
    with live_stack(vhost, tmp_path) as stack:
        job = stack.run_job(["noop"])
        assert job["status"] == "succeeded", job
        return {"api": stack.api_metrics(), "worker": stack.worker_metrics()}
