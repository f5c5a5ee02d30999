"""The finished outbox: every job whose end has work to do is announced at least once.

The store's scripts that make a job final (record, cancel, expire; `app.jobs.lua`)
put its id into the zset ``p finished`` in the same atomic step. Record does so only
for a job with a callback or a schedule (`app.jobs.lua.FINALIZER_FIELDS`) and then
answers ``announce`` instead of ``final``: a plain job's finalizer would only remove
its own entry, and skipping it saves a confirmed publish and a task per job
(docs/decisions.md, "Performance: the worker side"). Cancel and expire, rare, always
do. Whoever made the job final then publishes ``jobs.finished(job_id)`` on the
``webhooks`` queue (`announce`, best effort: a failed publish is only logged). The maintenance pass
(`republish_overdue`, on the reaper's beat tick) publishes again every entry
older than ``FINISHED_GRACE``, so a lost publish (broker down, process killed
between the script and the publish) delays the finalizer but never loses it.
The finalizer (`app.webhooks.finalize`) removes the entry when it is done
(`settle`), so it runs at least once per job; its steps are idempotent.
"""

from __future__ import annotations

import logging
import time
from typing import cast

from celery import Celery

from app.jobs.broker import PUBLISH_ERRORS
from app.jobs.names import FINISHED_TASK, WEBHOOKS_QUEUE
from app.jobs.store import JobStore

__all__ = ["announce", "pending", "republish_overdue", "settle"]

log = logging.getLogger("collectq.finalize")


def announce(celery: Celery, job_id: str, *, timeout: float = 5.0) -> bool:
    """Publish ``jobs.finished(job_id)``; False (logged) if the broker did not take it."""
    try:
        celery.send_task(
            FINISHED_TASK,
            args=[job_id],
            queue=WEBHOOKS_QUEUE,
            # as a collector's publish (app.jobs.broker): one quick reconnect covers a
            # connection the broker dropped while idle
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_max": 0.2},
            timeout=timeout,
            confirm_timeout=timeout,
        )
    except PUBLISH_ERRORS as exc:
        # the outbox keeps the job; the maintenance pass publishes it again
        log.warning("jobs.finished not published", extra={"job_id": job_id, "error": repr(exc)})
        return False
    return True


def pending(store: JobStore, older_than: float, limit: int = 500) -> list[str]:
    """Ids of outbox entries that became final more than `older_than` seconds ago."""
    raw = store.redis.zrangebyscore(
        store.keys.finished, "-inf", time.time() - older_than, start=0, num=limit
    )
    return [m.decode() for m in cast(list[bytes], raw)]


def republish_overdue(store: JobStore, celery: Celery, *, grace: float, timeout: float) -> int:
    """Publish ``jobs.finished`` again for each entry older than `grace`; count those sent.

    An entry republished is re-scored to now, so it is published at most once per
    `grace` even while the finalizer is slow or its queue has no consumer yet.
    """
    sent = 0
    for job_id in pending(store, grace):
        store.redis.zadd(store.keys.finished, {job_id: time.time()}, xx=True)
        if not announce(celery, job_id, timeout=timeout):
            break  # the broker is down: the next pass tries again
        sent += 1
    if sent:
        log.warning("finished jobs announced again", extra={"count": sent})
    return sent


def settle(store: JobStore, job_id: str) -> None:
    """The finalizer of `job_id` is done: its outbox entry goes."""
    store.redis.zrem(store.keys.finished, job_id)
