"""Collector tasks: thin adapters between Celery and `app.jobs.collect`.

One task per available collector, named ``collect.<name>`` and routed to
queue ``collect.<name>``; they share one body (`run_collector`) and one base
class, so no collector gets its own copy of the plumbing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.exceptions import TimeLimitExceeded as HardTimeLimitExceeded
from flask import Flask
from redis.exceptions import RedisError

from app.jobs.broker import ENQUEUED_AT_HEADER
from app.jobs.collect import Retry, collect, outage_delay, record_hard_time_limit
from app.jobs.context import JobContext
from app.jobs.finalize import announce
from app.jobs.names import collector_queue, collector_task
from app.logcontext import log_context
from app.runtime import runtime
from app.settings import Settings
from app.tasklog import task_fields

__all__ = ["CollectorTask", "register_collector_tasks", "run_collector"]

log = logging.getLogger("collectq.tasks")


class CollectorTask(Task):  # type: ignore[type-arg]
    """Delivery rules shared by every collector task (docs/architecture.md, "Reliability")."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False
    # The attempt budget is ours (MAX_RETRIES, counted by the store, redeliveries
    # included); Celery's own counter must never end a retry chain.
    max_retries = None
    flask_app: Flask  # set by register_collector_tasks

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # A hard time limit killed the pool process; this runs in the worker's main
        # process, so the collector's failure is recorded here.
        if isinstance(exc, HardTimeLimitExceeded) and len(args) == 2:
            with self.flask_app.app_context(), log_context(**task_fields(self.name, task_id)):
                ctx = runtime()
                if record_hard_time_limit(ctx, *args) == "announce":  # the job's finalizer
                    announce(self.app, args[0], timeout=ctx.settings.publish_timeout)


def run_collector(task: Task, job_id: str, collector: str) -> str:  # type: ignore[type-arg]
    """Run one collector of one job (`app.jobs.collect`); return what happened."""
    ctx = runtime()
    _observe_wait(ctx, task.request, collector)
    try:
        outcome = collect(ctx, job_id, collector, interrupts=(SoftTimeLimitExceeded,))
    except RedisError as exc:
        delay = outage_delay(ctx, task.request.retries + 1)
        log.warning("redis unreachable; task retried in %.1fs", delay, extra={"job_id": job_id})
        raise task.retry(countdown=delay, max_retries=None, exc=exc) from exc
    if isinstance(outcome, Retry):
        # max_retries=None: the attempt budget is ours (the store counts redeliveries too).
        raise task.retry(countdown=outcome.delay, max_retries=None, exc=outcome.error)
    if outcome == "announce":  # this delivery made the job final, and its finalizer is due
        announce(task.app, job_id, timeout=ctx.settings.publish_timeout)
    return outcome


def _observe_wait(ctx: JobContext, request: Any, collector: str) -> None:
    """Queue wait: from the publish (or the retry's ETA, whichever is later) to now.
    A redelivery is left out: its wait includes the run that died."""
    sent = request.get(ENQUEUED_AT_HEADER)
    if not isinstance(sent, int | float) or (request.delivery_info or {}).get("redelivered"):
        return
    due = datetime.fromisoformat(request.eta).timestamp() if request.eta else 0.0
    ctx.observer.waited(collector_queue(collector), time.time() - max(float(sent), due))


def register_collector_tasks(
    celery: Celery, flask_app: Flask, settings: Settings, names: list[str]
) -> None:
    """Register ``collect.<name>`` for every collector in `names`.

    The base mixes our delivery rules into the app's task class (which pushes
    the Flask app context, so `runtime()` works inside the task).
    """
    base = type("CollectorTask", (CollectorTask, celery.Task), {"flask_app": flask_app})
    for name in names:
        pool = settings.pool_for(name)
        celery.task(  # type: ignore[call-overload]
            run_collector,
            name=collector_task(name),
            base=base,
            bind=True,
            soft_time_limit=pool.soft_time_limit,
            time_limit=pool.hard_time_limit,
        )
