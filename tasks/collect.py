"""Collector tasks: thin adapters (load job → run collector → record).

One task per available collector, named ``collect.<name>`` and routed to
queue ``collect.<name>``; they share one body (`run_collector`) and one base
class, so no collector gets its own copy of the plumbing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from app.runtime import Runtime, runtime
from app.settings import Settings
from app.store import utcnow
from celeryconfig import collector_task
from collectors.base import (
    CollectContext,
    CollectorError,
    Result,
    TransientResponse,
)
from collectors.runner import run_collector_once
from schemas.status import TERMINAL_COLLECTOR, CollectorStatus
from tasks.backoff import backoff_delay

__all__ = ["CollectorTask", "register_collector_tasks", "run_collector"]

log = logging.getLogger("collectq.tasks")


class TimeLimitExceeded(CollectorError):
    type = "time_limit"
    retryable = False


class CollectorTask(Task):  # type: ignore[type-arg]
    """Delivery rules shared by every collector task (DESIGN §5)."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False


def _artifacts(rt: Runtime, job_id: str, result: Result) -> list[dict[str, Any]]:
    infos = []
    for art in result.artifacts:
        rt.store.put_artifact(job_id, art.name, art.content_type, art.body)
        infos.append(
            {
                "name": art.name,
                "content_type": art.content_type,
                "size": len(art.body),
                "url": f"/v1/jobs/{job_id}/artifacts/{art.name}",
            }
        )
    return infos


def run_collector(task: Task, job_id: str, collector: str) -> str:  # type: ignore[type-arg]
    """Run one collector of one job and record the outcome; return what happened."""
    rt = runtime()
    spec = rt.store.spec(job_id, collector)
    if spec is None:
        log.info("job gone, skipping", extra={"job_id": job_id, "collector": collector})
        return "missing"
    if spec.collector_status in TERMINAL_COLLECTOR:  # cancelled, or a redelivery of done work
        return "skipped"
    attempt = spec.attempt + 1
    started_at, t0 = utcnow(), time.perf_counter()
    rt.store.record(job_id, collector, CollectorStatus.RUNNING, attempt, {"started_at": started_at})

    def timing() -> dict[str, Any]:
        return {
            "started_at": started_at,
            "finished_at": utcnow(),
            "duration_ms": round((time.perf_counter() - t0) * 1000, 1),
        }

    outcome = _collect(
        rt,
        spec.target,
        spec.options,
        collector,
        ctx=CollectContext(policy=rt.policy, job_id=job_id, attempt=attempt),
    )
    if isinstance(outcome, CollectorError):
        if outcome.retryable and attempt <= rt.settings.max_retries:
            raise _retry(task, rt.settings, job_id, collector, attempt, outcome, timing())
        if isinstance(outcome, TransientResponse):
            outcome = outcome.result  # retries exhausted: the target's own answer is data
    if isinstance(outcome, CollectorError):
        body = {**timing(), "data": None, "artifacts": [], "error": outcome.to_dict()}
        return rt.store.record(job_id, collector, CollectorStatus.FAILED, attempt, body).outcome
    body = {
        **timing(),
        "data": outcome.data,
        "artifacts": _artifacts(rt, job_id, outcome),
        "error": None,
    }
    return rt.store.record(job_id, collector, CollectorStatus.SUCCEEDED, attempt, body).outcome


def _collect(
    rt: Runtime, target: str, raw_options: dict[str, Any], collector: str, ctx: CollectContext
) -> Result | CollectorError:
    try:
        return run_collector_once(
            rt.registry.get(collector),
            target,
            raw_options,
            ctx,
            passthrough=(SoftTimeLimitExceeded,),
        )
    except SoftTimeLimitExceeded:
        return TimeLimitExceeded("collector exceeded its soft time limit")


def _retry(
    task: Task,  # type: ignore[type-arg]
    settings: Settings,
    job_id: str,
    collector: str,
    attempt: int,
    exc: CollectorError,
    timing: dict[str, Any],
) -> Exception:
    delay = backoff_delay(
        attempt,
        base=settings.retry_backoff_base,
        cap=settings.retry_backoff_max,
        retry_after=exc.retry_after,
    )
    body = {
        **timing,
        "data": None,
        "artifacts": [],
        "error": exc.to_dict(),
        "retry_in_s": round(delay, 3),
    }
    runtime().store.record(job_id, collector, CollectorStatus.RETRYING, attempt, body)
    # max_retries=None: the attempt budget is ours (the store counts redeliveries too).
    return task.retry(countdown=delay, max_retries=None, exc=exc)


def register_collector_tasks(celery: Celery, settings: Settings, names: list[str]) -> None:
    """Register ``collect.<name>`` for every collector in `names`.

    The base mixes our delivery rules into the app's task class (which pushes
    the Flask app context, so `runtime()` works inside the task).
    """
    base = type("CollectorTask", (CollectorTask, celery.Task), {})
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
