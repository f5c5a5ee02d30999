"""The shared services' ceilings on this machine (`python -m benchmarks ceilings`).

docs/scaling.md divides these by what one job costs each service to say how far API
replicas and workers can grow before Redis or RabbitMQ is the limit:

* Redis: `redis-benchmark` (shipped with the server) on loopback, 50 clients, no
  pipelining: single commands per second (SET, GET, HSET, LPUSH).
* RabbitMQ: messages per second published with publisher confirms through the API's own
  publisher (`app.jobs.publisher`, 16 threads sharing one channel), into a queue of this run's
  vhost (purged afterwards).

Bounded in count and time; loopback only.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from typing import Any

__all__ = ["broker_rate", "redis_rates"]

REDIS_REQUESTS = 200_000
BROKER_SECONDS = 5.0
BROKER_MAX = 100_000
THREADS = 16


def redis_rates(host: str = "127.0.0.1", port: int = 6379) -> dict[str, float]:
    """Commands per second by kind, from redis-benchmark (-q --csv)."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return {}
    argv = [tool, "-h", host, "-p", str(port), "-n", str(REDIS_REQUESTS), "-q", "--csv"]
    out = subprocess.run(
        [*argv, "-t", "set,get,hset,lpush"], capture_output=True, text=True, timeout=120
    ).stdout
    rates: dict[str, float] = {}
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] != "test":
            try:
                rates[cells[0].split(" ")[0].lower()] = float(cells[1])
            except ValueError:
                continue
    return rates


def broker_rate(broker_url: str) -> float:
    """Confirmed publishes per second through one `ConfirmingPublisher`, THREADS threads."""
    from celery import Celery
    from kombu import Connection, Queue

    from app.jobs.broker import confirming_publisher

    celery = Celery("ceilings", broker=broker_url, set_as_current=False)
    with Connection(broker_url) as conn:
        Queue("bench-ceilings", durable=True)(conn.default_channel).declare()
    publisher = confirming_publisher(celery, timeout=10)
    body = {"job": "j_0", "collector": "noop"}
    deadline = time.monotonic() + BROKER_SECONDS
    budget = iter(range(BROKER_MAX))
    lock = threading.Lock()
    count = [0]

    def send(producer: Any) -> None:
        producer.publish(body, exchange="", routing_key="bench-ceilings", delivery_mode=2)

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if next(budget, None) is None:
                    return
            publisher.publish(send)
            with lock:
                count[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = count[0] / (time.perf_counter() - start)
    with Connection(broker_url) as conn:
        channel: Any = conn.default_channel
        channel.queue_delete("bench-ceilings")
    return rate
