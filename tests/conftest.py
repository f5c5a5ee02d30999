"""Shared fixtures: real Redis/RabbitMQ, isolated per run, and real worker processes.

Isolation: every test run gets its own RabbitMQ vhost; every test its own Redis
key prefix. Services default to the development machine's (127.0.0.1:6379,
127.0.0.1:5672 guest/guest) and can be overridden with COLLECTQ_TEST_REDIS_URL
and COLLECTQ_TEST_AMQP_URL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from app.jobs.store import JobStore
from tests.plugins import PLUGINS

# Skips are explicit: only the reasons tests/runreport.py allows keep a run green.
pytest_plugins = ["tests.runreport"]
# The chaos soak is a program (`make soak`), not tests: never collected.
collect_ignore = ["soak"]

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("COLLECTQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_BASE = os.environ.get("COLLECTQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")


@pytest.fixture(autouse=True)
def _scrub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COLLECTQ_* from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("COLLECTQ_") and not key.startswith("COLLECTQ_TEST_"):
            monkeypatch.delenv(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture
def site() -> Iterator[Any]:
    """A threaded pytest-httpserver on 127.0.0.1 (a slow handler does not block the rest)."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    """A local DNS server (tests/dnsserver.py) for the module; its port."""
    from tests.dnsserver import dns_server

    port = free_port()
    with dns_server(port):
        yield port


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    """A RabbitMQ vhost of this test run, removed afterwards."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:  # a failure, not a skip: a green run must mean the product was tested
        pytest.fail(
            "rabbitmqctl not found: `make test` installs and starts RabbitMQ "
            "(tests/services.sh); `make test-fast` runs the tests that need no services"
        )
    name = f"collectq-test-{uuid.uuid4().hex[:8]}"
    subprocess.run([ctl, "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        [ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    yield name
    subprocess.run([ctl, "delete_vhost", name], capture_output=True)


@pytest.fixture
def service_env(vhost: str) -> Iterator[dict[str, str]]:
    """COLLECTQ_* variables of one isolated deployment (own key prefix)."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    env = {
        "COLLECTQ_ENV": "test",
        "COLLECTQ_REDIS_URL": REDIS_URL,
        "COLLECTQ_BROKER_URL": f"{AMQP_BASE}/{vhost}",
        "COLLECTQ_REDIS_PREFIX": prefix,
        "COLLECTQ_NET_ALLOW": "127.0.0.0/8,::1/128",
        "COLLECTQ_PLUGINS": PLUGINS,
        "COLLECTQ_RETRY_BACKOFF_BASE": "0.05",
        "COLLECTQ_RETRY_BACKOFF_MAX": "0.2",
        "COLLECTQ_PUBLISH_TIMEOUT": "3",
    }
    yield env
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def store() -> Iterator[JobStore]:
    """A job store on the real Redis under a key prefix of its own, emptied afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"ts{uuid.uuid4().hex[:8]}:"
    yield JobStore(client, prefix, ttl=600)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


TEST_OWNER = "tests"
# Tests poll; the fixture key must never be the one that meets a rate limit by accident
# (rate-limit tests make their own keys).
FIXTURE_LIMITS = {rc: "100000/minute" for rc in ("submit", "read", "admin")}


class KeyedClient(FlaskClient):
    """A test client that sends the app's test API key unless given `api_key=""`."""

    def __init__(self, *args: Any, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        token = self.application.config.get("TEST_API_KEY") if api_key is None else api_key
        if token:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"


@pytest.fixture
def make_app(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Build the Flask app in-process from `service_env` plus overrides.

    Its `test_client()` is authenticated with an admin key created in the
    test's own Redis prefix (owner `tests`); `test_client(api_key="")` is not.
    """
    from app import create_app
    from app.settings import load_settings

    def build(**overrides: str) -> Any:
        for key, value in {**service_env, **overrides}.items():
            monkeypatch.setenv(key, value)
        return keyed(create_app(load_settings()))

    return build


def keyed(app: Any) -> Any:
    """Give `app` an admin key (owner `tests`) that its `test_client()` sends."""
    from app.auth.apikeys import format_token
    from app.runtime import runtime

    try:
        _, token = runtime(app).keys.create(
            owner=TEST_OWNER, name="fixture", scopes=["admin"], rate_limits=FIXTURE_LIMITS
        )
    except redis.ConnectionError:  # a test of an unreachable Redis: any well-formed key
        token = format_token("0" * 12, "0" * 32)
    app.config["TEST_API_KEY"] = token
    app.test_client_class = KeyedClient
    return app


class Worker:
    """A real `collectq worker` subprocess."""

    def __init__(self, env: dict[str, str], queues: str, log: Path, concurrency: int = 4) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-n",
                f"{uuid.uuid4().hex[:8]}@%h",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(self._ready, timeout=30, interval=0.1)
        except BaseException:
            self.stop()  # never left running (on a loaded machine it may start later)
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited: {self.log_path.read_text()[-3000:]}")
        return b" ready." in self.log_path.read_bytes()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_worker(service_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(
        queues: str = "collect.noop,collect.flaky,collect.http", concurrency: int = 4, **env: str
    ) -> Worker:
        log = tmp_path / f"worker{len(workers)}.log"
        w = Worker({**service_env, **env}, queues, log, concurrency)
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()
