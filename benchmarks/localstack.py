"""The service on loopback for the load benches (the locust run, the latency row).

Its own RabbitMQ vhost and Redis key prefix, a client's key whose limits the load cannot
reach (rate limiting still runs), the API and one noop worker; everything is stopped and
removed when the block ends.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from subprocess import Popen

from benchmarks.__main__ import (
    AMQP,
    AUTH,
    GUNICORN,
    RESULTS,
    WORKER_CONCURRENCY,
    _bench_key,
    _worker_ready,
    drop_prefix,
    free_port,
    http_ready,
    process,
    service_env,
    vhost,
)

__all__ = ["NOOP_QUEUE", "Stack", "local_stack"]

NOOP_QUEUE = "collect.noop"


@dataclass(frozen=True)
class Stack:
    port: int
    broker: str
    auth: dict[str, str]  # {"Authorization": "Bearer …"}
    token: str
    api: Popen[bytes]  # gunicorn's master; its children are the API workers
    worker: Popen[bytes]
    worker_metrics: str  # the worker's Prometheus URL (queue wait)


@contextmanager
def local_stack(api: str = "collectq") -> Iterator[Stack]:
    """The service for the block. `api`: "collectq" runs `collectq api` as deployed (gevent
    workers: long-polls and event streams hold no thread); "bench" runs the gunicorn of
    `python -m benchmarks` (2 gevent workers, no `collectq api` hooks), for rows compared
    with that bench's."""
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    py = sys.executable
    RESULTS.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        broker = f"{AMQP}/{stack.enter_context(vhost())}"
        stack.callback(drop_prefix, prefix)
        env = service_env(broker, prefix)
        token = _bench_key(prefix)
        AUTH["Authorization"] = f"Bearer {token}"  # _worker_ready's
        port, metrics_port = free_port(), free_port()
        bind = f"127.0.0.1:{port}"
        argv = (
            [py, "-m", "app.cli", "api", "--bind", bind]
            if api == "collectq"
            else [py, "-m", "gunicorn", *GUNICORN, "--bind", bind, "app.wsgi:application"]
        )
        api_proc = stack.enter_context(process(argv, env, http_ready(port)))
        worker_env = {**env, "COLLECTQ_WORKER_METRICS_PORT": str(metrics_port)}
        worker = [py, "-m", "app.cli", "worker", "-Q", NOOP_QUEUE]
        worker += ["-c", WORKER_CONCURRENCY, "-P", "threads"]
        worker_proc = stack.enter_context(process(worker, worker_env, _worker_ready(port)))
        yield Stack(
            port=port,
            broker=broker,
            auth={"Authorization": f"Bearer {token}"},
            token=token,
            api=api_proc,
            worker=worker_proc,
            worker_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
        )
