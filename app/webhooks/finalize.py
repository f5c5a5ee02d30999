"""The finalizer: what happens once when a job becomes final (``jobs.finished``).

Runs at least once per final job (`app.jobs.finalize`: the outbox, republished
by the maintenance pass), so every step is idempotent. In order:

1. `_after_final`: the steps other parts add (change detection, the schedule's
   run bookkeeping) — the one place they go;
2. the webhook deliveries the job's callback asks for, each created once
   (`DeliveryStore.create`) and published as a ``webhooks.deliver`` task;
3. the outbox entry goes (`settle`).

A failed publish in 2 raises: the entry stays and the finalizer runs again later.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from app.changes import record_run
from app.jobs.context import JobContext
from app.jobs.finalize import settle
from app.jobs.names import DELIVER_TASK, WEBHOOKS_QUEUE
from app.schedules import run_finished
from app.webhooks.deliver import delivery_store
from app.webhooks.deliveries import DeliveryState
from app.webhooks.events import events_for

__all__ = ["finish", "publish_delivery"]

log = logging.getLogger("collectq.webhooks")


def _after_final(ctx: JobContext, envelope: dict[str, Any]) -> Any:
    """THE place where other parts hook into a job's end, in this order. Each call must
    be idempotent (this may run twice). A job reaches it only if it has a field of
    `app.jobs.lua.FINALIZER_FIELDS` (or was cancelled or expired): a step that needs
    another field needs it added there.
    Returns the change found by change detection (None: no change, or no schedule).

    (1) CHANGES: ``change = app.changes.record_run(ctx, envelope)`` if the job has a
        schedule_id;
    (2) SCHEDULES: ``app.schedules.run_finished(ctx, envelope)``.
    """
    # (1) change detection: the run compared with the schedule's earlier results
    found = record_run(ctx, envelope)
    change = found.to_dict() if found is not None else None
    # (2) schedule run bookkeeping: the run's concurrency slot is free
    if envelope.get("schedule_id"):
        run_finished(ctx, envelope)
    return change


def finish(ctx: JobContext, celery: Celery, job_id: str) -> list[str]:
    """Run the finalizer of `job_id`; return the ids of the deliveries it published."""
    envelope = ctx.store.get(job_id)
    if envelope is None:  # expired before its finalizer ran: nothing left to tell
        settle(ctx.store, job_id)
        return []
    change = _after_final(ctx, envelope)
    published = _deliveries(ctx, celery, envelope, change)
    settle(ctx.store, job_id)
    return published


def _deliveries(
    ctx: JobContext, celery: Celery, envelope: dict[str, Any], change: Any
) -> list[str]:
    callback = envelope.get("callback")
    if not callback:
        return []
    dstore = delivery_store(ctx)
    published: list[str] = []
    for event in events_for(envelope["status"], callback["on"], change is not None):
        record, created = dstore.create(envelope["id"], event, callback["url"], change=change)
        # a record left pending with no attempt: its publish may have failed last time
        if created or (record["state"] == DeliveryState.PENDING and not record["attempts"]):
            publish_delivery(celery, envelope["id"], record["id"], 0, countdown=None)
            published.append(record["id"])
    return published


def publish_delivery(
    celery: Celery, job_id: str, did: str, attempts_before: int, *, countdown: float | None
) -> None:
    """Publish the ``webhooks.deliver`` task of attempt `attempts_before + 1`."""
    celery.send_task(
        DELIVER_TASK,
        args=[job_id, did, attempts_before],
        queue=WEBHOOKS_QUEUE,
        countdown=countdown,
    )
