"""Fault-test fixtures: own Redis and RabbitMQ, real worker/beat processes, the report.

Every scenario records one row (accepted, completed, lost, duplicated result
records, time to recover) into ``tests/faults/results/latest.jsonl``;
``python -m tests.faults.report`` prints the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from tests.conftest import ROOT, free_port, keyed, wait_for
from tests.faults.services import RabbitNode, RedisServer
from tests.plugins import PLUGINS

RESULTS = ROOT / "tests" / "faults" / "results" / "latest.jsonl"

# Fast clocks so that lapses, reaps and breakers happen within seconds.
FAST = {
    "COLLECTQ_ENV": "test",
    "COLLECTQ_NET_ALLOW": "127.0.0.0/8,::1/128",
    "COLLECTQ_PLUGINS": PLUGINS,
    "COLLECTQ_RETRY_BACKOFF_BASE": "0.05",
    "COLLECTQ_RETRY_BACKOFF_MAX": "0.5",
    "COLLECTQ_PUBLISH_TIMEOUT": "3",
    "COLLECTQ_HEARTBEAT_INTERVAL": "0.5",
    "COLLECTQ_HEARTBEAT_TIMEOUT": "2",
    "COLLECTQ_REAP_INTERVAL": "1",
    "COLLECTQ_REAP_QUEUED_AFTER": "4",
    "COLLECTQ_BROKER_HEARTBEAT": "2",
    "COLLECTQ_SOFT_SHUTDOWN_TIMEOUT": "5",
    "COLLECTQ_LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        pytest.fail("rabbitmq-server not installed: `make test` installs it (tests/services.sh)")
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_env(rabbit: RabbitNode, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    if rabbit.proc is None:  # a scenario that failed half-way left it stopped
        rabbit.start()
    rabbit.resume()
    vhost = f"f{uuid.uuid4().hex[:8]}"
    rabbit.add_vhost(vhost)
    yield {
        **FAST,
        "COLLECTQ_REDIS_URL": redis_server.url,
        "COLLECTQ_BROKER_URL": rabbit.url(vhost),
        "COLLECTQ_REDIS_PREFIX": "cq:",
    }
    if rabbit.proc is not None:
        rabbit.resume()
        rabbit.ctl("delete_vhost", vhost)


@pytest.fixture
def fault_app(fault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    from app import create_app
    from app.settings import load_settings

    def build(**overrides: str) -> Any:
        for key, value in {**fault_env, **overrides}.items():
            monkeypatch.setenv(key, value)
        return keyed(create_app(load_settings()))

    return build


class Proc:
    """A `collectq worker` or `collectq beat` subprocess with its log."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, ready: bytes) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *argv],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if ready:
            wait_for(lambda: self._ready(ready), timeout=60, interval=0.1)

    def _ready(self, marker: bytes) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"process exited: {self.log_path.read_text()[-3000:]}")
        return marker in self.log_path.read_bytes()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the process and its pool children (as the OOM killer would)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        with contextlib.suppress(ProcessLookupError):  # children a SIGKILLed parent left
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode


@dataclass
class Cluster:
    env: dict[str, str]
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def worker(self, queues: str = "collect.noop,collect.flaky,collect.http", **env: str) -> Proc:
        n = len(self.procs)
        conc = env.pop("concurrency", "4")
        p = Proc(
            ["worker", "-Q", queues, "-c", conc, "-n", f"w{n}-{uuid.uuid4().hex[:6]}@%h"],
            {**self.env, **env},
            self.tmp / f"worker{n}.log",
            b" ready.",
        )
        self.procs.append(p)
        return p

    def maintenance(self) -> tuple[Proc, Proc]:
        """The reaper: a maintenance worker and beat."""
        worker = self.worker("maintenance", concurrency="1")
        n = len(self.procs)
        beat = Proc(
            ["beat", "-s", str(self.tmp / "beat-schedule")],
            self.env,
            self.tmp / f"beat{n}.log",
            b"beat: Starting",
        )
        self.procs.append(beat)
        return worker, beat


@pytest.fixture
def cluster(fault_env: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(fault_env, tmp_path)
    try:
        yield c
    finally:
        for p in c.procs:
            p.stop()


# --- outcome accounting -------------------------------------------------------------


def job_records(redis_url: str, prefix: str = "cq:") -> dict[str, dict[str, str]]:
    """Every job hash in the store, decoded."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    out = {}
    for key in client.scan_iter(f"{prefix}job:*", count=1000):
        out[key.split(":", 2)[2]] = cast(dict[str, str], client.hgetall(key))
    return out


TERMINAL = {"succeeded", "partial", "failed", "cancelled", "expired"}


@dataclass
class Tally:
    accepted: int
    completed: int
    lost: int
    duplicated: int
    attempts: dict[int, int]
    requeued: int = 0  # collectors the reaper had to publish again

    def row(self, scenario: str, recover_s: float | None, **extra: Any) -> dict[str, Any]:
        return {
            "scenario": scenario,
            "accepted": self.accepted,
            "completed": self.completed,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "recover_s": None if recover_s is None else round(recover_s, 1),
            "attempts": {str(k): v for k, v in sorted(self.attempts.items())},
            "reaper_requeued": self.requeued,
            **extra,
        }


def tally(redis_url: str, accepted: list[str]) -> Tally:
    """Accepted jobs that ended (completed), that did not (lost: missing or unfinished),
    and collectors whose terminal result was recorded more than once (duplicated)."""
    records = job_records(redis_url)
    completed = lost = duplicated = requeued = 0
    attempts: dict[int, int] = {}
    for job_id in accepted:
        h = records.get(job_id)
        if h is None or h.get("status") not in TERMINAL:
            lost += 1
            continue
        completed += 1
        dup, req, tries = record_counts(h)
        duplicated, requeued = duplicated + dup, requeued + req
        for a, n in tries.items():
            attempts[a] = attempts.get(a, 0) + n
    return Tally(len(accepted), completed, lost, duplicated, attempts, requeued)


def record_counts(h: dict[str, str]) -> tuple[int, int, dict[int, int]]:
    """Of one job's hash: terminal results recorded more than once (duplicated), the
    reaper's requeues, and how many collectors took each number of attempts."""
    duplicated = requeued = 0
    attempts: dict[int, int] = {}
    for name in json.loads(h["collectors"]):
        duplicated += max(0, int(h.get(f"t:{name}", "1")) - 1)
        requeued += int(h.get(f"k:{name}", "0"))
        a = int(h.get(f"a:{name}", "0"))
        attempts[a] = attempts.get(a, 0) + 1
    return duplicated, requeued, attempts


def reaper_ticked_since(redis_url: str, wall_time: float, prefix: str = "cq:") -> bool:
    """Whether the reaper finished a pass after `wall_time` (beat and its worker are alive)."""
    at = redis.Redis.from_url(redis_url).hget(f"{prefix}reaper:last", "at")
    return at is not None and float(at) > wall_time


def wait_all_terminal(redis_url: str, ids: list[str], timeout: float) -> float:
    """Wait until every job in `ids` is terminal; return the seconds it took."""
    t0 = time.monotonic()

    def done() -> bool:
        records = job_records(redis_url)
        return all(records.get(i, {}).get("status") in TERMINAL for i in ids)

    try:
        wait_for(done, timeout=timeout, interval=0.25)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not terminal: {_stuck(redis_url, ids)}") from None
    return time.monotonic() - t0


def _stuck(redis_url: str, ids: list[str], show: int = 5) -> str:
    """The jobs of `ids` that are not terminal: a count per status and a few records."""
    records = job_records(redis_url)
    stuck = {i: records.get(i) for i in ids if records.get(i, {}).get("status") not in TERMINAL}
    counts: dict[str, int] = {}
    for h in stuck.values():
        status = "missing" if h is None else h.get("status", "?")
        counts[status] = counts.get(status, 0) + 1
    return f"{counts} e.g. {dict(list(stuck.items())[:show])}"


@pytest.fixture(scope="session")
def fault_report() -> Callable[[dict[str, Any]], None]:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("")

    def record(row: dict[str, Any]) -> None:
        with RESULTS.open("a") as f:
            f.write(json.dumps(row) + "\n")

    return record


def submit(client: Any, body: dict[str, Any]) -> str | None:
    """POST a job: its id on 202, None on 503 (anything else fails the test). `fresh`:
    each submit is a job of its own (the scenarios count jobs; identical requests in
    flight would otherwise share one)."""
    resp = client.post("/v1/jobs", json={**body, "fresh": True})
    if resp.status_code == 503:
        assert resp.headers["Retry-After"]
        return None
    assert resp.status_code == 202, resp.json
    return str(resp.json["id"])


def accepted(client: Any, body: dict[str, Any]) -> str:
    """submit() where no 503 is expected: the job's id."""
    job_id = submit(client, body)
    assert job_id is not None, "the API answered 503"
    return job_id


def job(redis_url: str, job_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return cast(dict[str, str], client.hgetall(f"cq:job:{job_id}"))
