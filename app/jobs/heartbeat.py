"""The heartbeat of a running collector: a thread that refreshes its watch entry.

The reaper (`app.jobs.reaper`) treats a running collector whose heartbeat lapsed as
lost (killed worker, frozen process) and requeues it. A collector that runs
past the hard time limit stops being kept alive even if its thread still
runs (the thread pool cannot interrupt it), so a hung collector is reaped too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from app.jobs.store import JobStore

__all__ = ["heartbeat"]

log = logging.getLogger("collectq.tasks")


@contextmanager
def heartbeat(
    store: JobStore,
    job_id: str,
    collector: str,
    *,
    interval: float,
    timeout: float,
    max_runtime: float,
) -> Iterator[threading.Event]:
    """Keep `collector` of `job_id` alive while the block runs.

    Yields an event that is set when the collector is no longer watched
    (cancelled, expired, or finished by another delivery).
    """
    stop, gone = threading.Event(), threading.Event()
    give_up = time.monotonic() + max_runtime

    def beat() -> None:
        while not stop.wait(interval) and time.monotonic() < give_up:
            try:
                if not store.beat(job_id, collector, timeout):
                    gone.set()
                    return
            except RedisError:  # Redis restarting: the next beat tries again
                log.warning("heartbeat failed", extra={"job_id": job_id, "collector": collector})

    thread = threading.Thread(target=beat, name=f"heartbeat {job_id}.{collector}", daemon=True)
    thread.start()
    try:
        yield gone
    finally:
        stop.set()
        thread.join(timeout=5)
