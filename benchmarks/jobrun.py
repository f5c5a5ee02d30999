"""A worker bench's parts: its own vhost and Redis prefix, a real worker, jobs queued in process.

Used by `benchmarks.fanout` and `benchmarks.roundtrips`. Jobs are created and published
the way the API does it (`store.create`, then `broker.publish` with confirms), without
the API in between, so what is measured is the worker. Loopback only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import redis

__all__ = ["Run", "bench_run", "worker"]


@dataclass
class Run:
    """One bench run's environment and an in-process app that queues jobs into it."""

    env: dict[str, str]
    prefix: str
    app: Any = None
    _targets: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))

    def start_app(self) -> None:
        os.environ.update(self.env)
        from app import create_app

        self.app = create_app()

    def queue(self, collector: str, target: str | None = None, options: Any = None) -> str:
        """Create and publish one job of `collector` (confirmed by the broker); its id."""
        from app.jobs import broker
        from app.runtime import runtime

        rt = runtime(self.app)
        job_id: str = rt.store.create(
            owner="bench",
            target=target or f"t{next(self._targets)}.example.org",
            collectors=[collector],
            options={collector: options} if options else {},
            labels={},
        )["id"]
        celery = self.app.extensions["celery"]
        broker.publish(celery, rt, job_id, [collector], owner="bench", request_id=None)
        return job_id

    def status(self, job_id: str) -> str | None:
        from app.runtime import runtime

        return runtime(self.app).store.status(job_id)

    def wait_terminal(self, job_ids: list[str], timeout: float, pause: float = 0.02) -> int:
        """Wait (bounded) until every job is terminal; how many are.

        Cheap enough to poll while thousands run: jobs end roughly in the order they were
        queued, so each poll reads only the newest few unfinished ones, and the rest once
        those are done."""
        deadline = time.monotonic() + timeout
        left = list(job_ids)
        while left and time.monotonic() < deadline:
            if not self._left(left[-64:]):
                left = self._left(left)
            if left:
                time.sleep(pause)
        return len(job_ids) - len(left)

    def _left(self, job_ids: list[str]) -> list[str]:
        """Which of `job_ids` are not final yet (in their order)."""
        from app.runtime import runtime

        store = runtime(self.app).store
        pipe = store.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(store.keys.job(job_id), "status")
        statuses = pipe.execute()
        return [j for j, s in zip(job_ids, statuses, strict=True) if not store.is_terminal(_str(s))]


def _str(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


@contextmanager
def bench_run(plugins: str = "", **extra: str) -> Iterator[Run]:
    """A vhost and a Redis prefix of their own (removed afterwards), loopback targets allowed."""
    from benchmarks.__main__ import AMQP, drop_prefix, service_env, vhost

    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    with ExitStack() as stack:
        vh = stack.enter_context(vhost())
        env = {
            **service_env(f"{AMQP}/{vh}", prefix),
            "COLLECTQ_NET_ALLOW": "127.0.0.0/8,::1/128",  # the bench's targets are loopback
            **({"COLLECTQ_PLUGINS": plugins} if plugins else {}),
            **extra,
        }
        try:
            yield Run(env, prefix)
        finally:
            drop_prefix(prefix)


@contextmanager
def worker(
    run: Run, queue: str, *args: str, launcher: tuple[str, ...] = ("app.cli", "worker")
) -> Iterator[subprocess.Popen[bytes]]:
    """A real collectq worker (`collectq worker -Q queue …`), ready when it yields.
    `launcher`: the module (and its arguments) that runs it."""
    from benchmarks.__main__ import REDIS, RESULTS, process

    RESULTS.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", *launcher, "-Q", queue, *args]
    client = redis.Redis.from_url(REDIS)
    online = f"{run.prefix}workers"  # app.metrics_presence: the node's presence

    def ready() -> bool:
        members = cast(list[bytes], client.zrange(online, 0, -1))
        return any(m.decode().startswith(f"{queue}|") for m in members)

    with process(argv, run.env, ready) as proc:
        yield proc
