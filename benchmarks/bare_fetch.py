"""The fan-out bench's baseline: bare Celery, one task per fetch, urllib3, nothing else.

What a Celery worker costs per HTTP fetch before anything collectq adds (the job record,
its events, breakers, artifacts, the SSRF guard, retries): a task that GETs its URL with a
shared urllib3 pool and counts itself in Redis (one pipeline: the first start, the count,
the last end), on the same broker settings as collectq's worker (WORKER_CONF) and the
same pool, concurrency and prefetch as the http queue's. Configured from BENCH_BROKER_URL,
BENCH_REDIS_URL, BENCH_PREFIX and BENCH_CONCURRENCY. Loopback only (the bench's delay server).
"""

from __future__ import annotations

import os
import time

import redis
import urllib3
from celery import Celery

from benchmarks.bare_celery import WORKER_CONF

__all__ = ["QUEUE", "app", "fetch", "keys"]

QUEUE = "barefetch"

app = Celery("barefetch")
app.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL"),
    task_default_queue=QUEUE,
    task_ignore_result=True,
    **WORKER_CONF,
)
_pool: dict[str, urllib3.PoolManager] = {}
_redis: dict[str, redis.Redis] = {}


def keys(prefix: str) -> tuple[str, str, str]:
    """The Redis keys a run counts into: first start, count, last end."""
    return f"{prefix}first", f"{prefix}count", f"{prefix}last"


@app.task(name="bare.fetch")
def fetch(url: str) -> None:
    if not _pool:  # one pool per worker process, as wide as its threads
        size = int(os.environ.get("BENCH_CONCURRENCY", "10"))
        _pool["p"] = urllib3.PoolManager(maxsize=size, block=False, retries=False)
        _redis["r"] = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    started = time.time()
    response = _pool["p"].request("GET", url, timeout=10.0)
    response.data  # noqa: B018 - read the body, as a collector does
    first, count, last = keys(os.environ["BENCH_PREFIX"])
    pipe = _redis["r"].pipeline(transaction=False)
    pipe.set(first, started, nx=True)
    pipe.incr(count)
    pipe.set(last, time.time())
    pipe.execute()
