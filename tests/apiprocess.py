"""A real API process (`collectq api`: gunicorn, one worker) for tests that need one, with
the environment the test gives it (tracing and Sentry tests: OTEL_*, COLLECTQ_SENTRY_DSN).

    with running_api({**service_env, "COLLECTQ_SENTRY_DSN": dsn}, tmp_path) as api:
        start_worker(...)    # meanwhile gunicorn boots
        api.wait_ready()
        status, body, headers = api.call("GET", "/v1/jobs", headers={"X-Request-ID": "r1"})
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.conftest import FIXTURE_LIMITS, REDIS_URL, ROOT, free_port, wait_for

__all__ = ["RunningApi", "running_api", "stop_process"]


@dataclass
class RunningApi:
    port: int
    token: str  # an admin API key of the deployment's prefix
    log: Path
    proc: subprocess.Popen[bytes]

    def wait_ready(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"API exited: {self.log.read_text()[-3000:]}")
            try:
                return self.call("GET", "/health")[0] == 200
            except OSError:
                return False

        wait_for(up, timeout=30, interval=0.1)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body, headers); the admin key unless `headers` names another."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token}",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
        except urllib.error.HTTPError as err:
            with err:  # its socket, else a ResourceWarning
                return err.code, json.loads(err.read() or b"null"), dict(err.headers)

    def wait(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The job's envelope once it is finished."""
        terminal = {"succeeded", "partial", "failed", "cancelled", "expired"}

        def done() -> Any:
            status, env, _ = self.call("GET", f"/v1/jobs/{job_id}?wait=5")
            return env if status == 200 and env["status"] in terminal else None

        return dict(wait_for(done, timeout=timeout, interval=0.05))


@contextmanager
def running_api(
    env: dict[str, str], tmp_path: Path, store_url: str = REDIS_URL
) -> Iterator[RunningApi]:
    """Start `collectq api` on a free loopback port with `env` (over this process's own,
    without its COLLECTQ_* settings), not waiting for it (`wait_ready`); stop it on exit.
    Its admin key is made in the Redis at `store_url` (the API's, when not the shared one)."""
    from app.auth.apikeys import KeyStore

    client = redis.Redis.from_url(store_url)
    _, token = KeyStore(client, env["COLLECTQ_REDIS_PREFIX"]).create(
        owner="tests", name="api", scopes=["admin"], rate_limits=FIXTURE_LIMITS
    )
    port, log_path = free_port(), tmp_path / "api.log"
    base = {  # not the shell's collectq or metrics settings (the test's own stay)
        k: v
        for k, v in os.environ.items()
        if k != "PROMETHEUS_MULTIPROC_DIR"
        and (not k.startswith("COLLECTQ_") or k.startswith("COLLECTQ_TEST_"))
    }
    settings = {"COLLECTQ_API_WORKERS": "1", "COLLECTQ_METRICS_PORT": "0", **env}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env={**base, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield RunningApi(port, token, log_path, proc)
    finally:
        stop_process(proc, grace=30)


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the exit either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
