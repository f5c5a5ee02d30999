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
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.apiprocess import RunningApi, running_api
from tests.conftest import AMQP_BASE, REDIS_URL, Worker, free_port, wait_for
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


@dataclass
class LiveStack:
    env: dict[str, str]
    running: RunningApi
    metrics_port: int
    worker_metrics_port: int
    worker: Worker
    jobs: list[str] = field(default_factory=list)

    @property
    def api_port(self) -> int:
        return self.running.port

    @property
    def api_proc(self) -> subprocess.Popen[bytes]:
        return self.running.proc

    def api(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        status, data, _ = self.running.call(method, path, body)
        return status, data

    def submit(self, collectors: list[str], options: dict[str, Any] | None = None) -> str:
        body = {
            "target": "http://127.0.0.1/",
            "collectors": collectors,
            "options": options or {},
            "fresh": True,  # each call a job of its own (identical ones in flight would share)
        }
        status, envelope = self.api("/v1/jobs", "POST", body)
        assert status == 202, envelope
        self.jobs.append(envelope["id"])
        return str(envelope["id"])

    def run_job(self, collectors: list[str], options: dict[str, Any] | None = None) -> dict:
        return self.running.wait(self.submit(collectors, options))

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
    vhost: str,
    tmp_path: Path,
    *,
    api_workers: int = 2,
    queues: str = WORKER_QUEUES,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LiveStack]:
    """Start the API (gunicorn, `api_workers` processes) and one worker node; stop both."""
    env = deployment_env(vhost) | (extra_env or {})
    metrics_port, worker_metrics_port = free_port(), free_port()
    env.update(
        COLLECTQ_API_WORKERS=str(api_workers),
        COLLECTQ_API_THREADS="4",
        COLLECTQ_METRICS_HOST="127.0.0.1",
        COLLECTQ_METRICS_PORT=str(metrics_port),
        COLLECTQ_WORKER_METRICS_PORT=str(worker_metrics_port),
        COLLECTQ_METRICS_DIR=str(tmp_path / "metrics"),
    )
    worker = None
    try:
        with running_api(env, tmp_path) as running:
            worker = Worker(env, queues, tmp_path / "worker.log", concurrency=2)
            running.wait_ready()
            stack = LiveStack(env, running, metrics_port, worker_metrics_port, worker)
            wait_for(lambda: http(f"http://127.0.0.1:{metrics_port}/metrics")[0] == 200, 10)
            yield stack
    finally:
        if worker is not None:
            worker.stop()
        client = redis.Redis.from_url(REDIS_URL)
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
