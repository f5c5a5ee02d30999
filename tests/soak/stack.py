"""The whole service on its own Redis (AOF) and RabbitMQ node: API, workers, beat.

Built from the fault tests' pieces (`tests.faults.services`, `tests.faults.conftest.Proc`,
`tests.apiprocess.running_api`); what it adds is roles: every process has one (`api`,
`w-http`, ..., `beat`, `redis`, `rabbitmq`), so a fault can pick one, an operator's
restart can replace it, and the sampler can add up a role's processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.apiprocess import RunningApi, running_api
from tests.conftest import free_port
from tests.faults.conftest import FAST, Proc
from tests.faults.services import RabbitNode, RedisServer

__all__ = ["WORKERS", "WORKER_ROLES", "Stack", "running_stack", "soak_settings"]

# Queue → worker concurrency. Two cores: the screenshot worker gets one browser.
WORKERS = {
    "collect.http": 8,
    "collect.dns": 4,
    "collect.tls": 4,
    "collect.screenshot": 1,
    "maintenance": 1,
    "webhooks": 2,
}
WORKER_ROLES = tuple(f"w-{q.removeprefix('collect.')}" for q in WORKERS)


def soak_settings(job_ttl: int) -> dict[str, str]:
    """The fault tests' fast clocks, plus retention short enough to plateau within the run
    (docs/decisions.md, "Reliability: the chaos soak (issue 17)")."""
    return {
        **FAST,
        "COLLECTQ_JOB_TTL": str(job_ttl),
        # before JOB_TTL, so a job that cannot finish ends `expired` while it still exists
        "COLLECTQ_JOB_DEADLINE": str(max(10, job_ttl * 3 // 4)),
        "COLLECTQ_FINISHED_GRACE": "10",
        "COLLECTQ_BREAKER_FAIL_MAX": "5",
        "COLLECTQ_BREAKER_RESET_TIMEOUT": "5",
        "COLLECTQ_BEAT_LOCK_TIMEOUT": "5",
        "COLLECTQ_BEAT_MAX_INTERVAL": "1",
        "COLLECTQ_MAX_QUEUED_JOBS": "0",  # an outage piles jobs up; the quota is not tested here
        "COLLECTQ_CHROMIUM_NO_SANDBOX": "true" if os.geteuid() == 0 else "false",
        "COLLECTQ_API_WORKERS": "2",
        "COLLECTQ_LOG_JSON": "true",
        "COLLECTQ_LOG_LEVEL": "WARNING",
    }


@dataclass
class Stack:
    redis: RedisServer
    rabbit: RabbitNode
    env: dict[str, str]
    tmp: Path
    api: RunningApi | None = None
    procs: dict[str, Proc] = field(default_factory=dict)  # role → its current process
    retired: list[Proc] = field(default_factory=list)  # replaced ones: their logs stay
    _starts: int = 0

    # --- processes -------------------------------------------------------------------
    def start_role(self, role: str) -> Proc:
        """Start (or start again) the process of `role`, as an orchestrator would."""
        self._starts += 1
        log = self.tmp / f"{role}.{self._starts}.log"
        if role == "beat":
            argv = ["beat", "-s", str(self.tmp / "beat-schedule")]
            proc = Proc(argv, self.env, log, b"")  # JSON logs: its banner is off
        else:
            queue = next(q for q in WORKERS if role == f"w-{q.removeprefix('collect.')}")
            name = f"{role}-{uuid.uuid4().hex[:6]}@%h"
            argv = ["worker", "-Q", queue, "-c", str(WORKERS[queue]), "-n", name]
            proc = Proc(argv, self.env, log, b"")
        old = self.procs.get(role)
        if old is not None:
            self.retired.append(old)
        self.procs[role] = proc
        return proc

    def pids(self) -> dict[str, list[int]]:
        """The top process of every role (the sampler adds their children)."""
        out = {role: [p.proc.pid] for role, p in self.procs.items() if p.proc.poll() is None}
        if self.api is not None and self.api.proc.poll() is None:
            out["api"] = [self.api.proc.pid]
        if self.redis.proc is not None:
            out["redis"] = [self.redis.proc.pid]
        with contextlib.suppress(OSError, ValueError):
            out["rabbitmq"] = [self.rabbit.beam_pid]
        return out

    def ports(self) -> dict[int, str]:
        """The stack's listening ports by name (what a process's connections reach)."""
        ports = {self.redis.port: "redis", self.rabbit.port: "rabbitmq"}
        if self.api is not None:
            ports[self.api.port] = "api"
        return ports

    def logs(self, role_prefix: str) -> list[Path]:
        return [
            p.log_path
            for p in [*self.retired, *self.procs.values()]
            if p.log_path.name.startswith(role_prefix)
        ]

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.signal(signal.SIGCONT)
            proc.stop(timeout=30)
        for proc in self.retired:
            proc.stop(timeout=5)


@contextmanager
def running_stack(tmp: Path, env: dict[str, str]) -> Iterator[Stack]:
    """Redis, RabbitMQ (a vhost of the run), the API, every worker role and beat."""
    with ExitStack() as stack:
        redis = RedisServer(tmp / "redis", free_port())
        redis.start()
        stack.callback(redis.stop)
        # A consumer timeout above the longest task (the screenshot pool's 90 s hard limit)
        # plus a prefetched message's wait behind it, as production's 30 min default is:
        # the fault tests' 20 s ended the screenshot worker whenever its queue backed up.
        rabbit = RabbitNode(tmp / "rabbit", consumer_timeout_ms=300_000)
        rabbit.start()
        stack.callback(rabbit.stop)
        rabbit.add_vhost("soak")
        full = {
            **env,
            "COLLECTQ_REDIS_URL": redis.url,
            "COLLECTQ_BROKER_URL": rabbit.url("soak"),
            "COLLECTQ_REDIS_PREFIX": "cq:",
        }
        s = Stack(redis, rabbit, full, tmp)
        s.api = stack.enter_context(running_api(full, tmp, store_url=redis.url))
        stack.callback(s.stop)
        for role in (*WORKER_ROLES, "beat"):
            s.start_role(role)
        s.api.wait_ready()
        yield s
