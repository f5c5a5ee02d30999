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
from celery.exceptions import TimeLimitExceeded as HardTimeLimitExceeded
from flask import Flask
from redis.exceptions import RedisError

from app.jobs.backoff import backoff_delay
from app.jobs.breaker import host_of
from app.jobs.context import JobContext
from app.jobs.heartbeat import heartbeat
from app.jobs.names import collector_task
from app.jobs.store import utcnow
from app.runtime import runtime
from app.settings import Settings
from collectors.base import (
    CollectContext,
    CollectorError,
    Result,
    TransientResponse,
)
from collectors.runner import run_collector_once
from schemas.status import CollectorStatus

__all__ = ["CollectorTask", "register_collector_tasks", "run_collector"]

log = logging.getLogger("collectq.tasks")


class TimeLimitExceeded(CollectorError):
    type = "time_limit"
    retryable = False


class RedeliveryLimit(CollectorError):
    """Every delivery of this collector died without recording (a poison message)."""

    type = "redelivery_limit"
    retryable = False


class CollectorTask(Task):  # type: ignore[type-arg]
    """Delivery rules shared by every collector task (DESIGN §5)."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False
    # The attempt budget is ours (MAX_RETRIES, counted by the store, redeliveries
    # included); Celery's own counter must never end a retry chain.
    max_retries = None
    flask_app: Flask  # set by register_collector_tasks

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """A hard time limit killed the process: the collector fails with `time_limit`.

        Runs in the worker's main process (the pool already replaced the child),
        so the record is written here; without it the collector would stay
        `running` until the reaper noticed.
        """
        if not isinstance(exc, HardTimeLimitExceeded) or len(args) != 2:
            return
        job_id, collector = args
        with self.flask_app.app_context():
            rt = runtime()
            spec = rt.store.spec(job_id, collector)
            if spec is None:
                return
            limit = rt.settings.pool_for(collector).hard_time_limit
            error = TimeLimitExceeded(f"killed after the hard time limit ({limit}s)")
            body: dict[str, Any] = {"data": None, "artifacts": [], "error": error.to_dict()}
            rt.store.record(job_id, collector, CollectorStatus.FAILED, spec.attempt, body)


def _artifacts(rt: JobContext, job_id: str, result: Result) -> list[dict[str, Any]]:
    infos: list[dict[str, Any]] = []
    budget = rt.settings.artifact_budget_bytes
    for art in result.artifacts:
        stored, evicted = rt.store.put_artifact(
            job_id, art.name, art.content_type, art.body, budget=budget
        )
        info: dict[str, Any] = {
            "name": art.name,
            "content_type": art.content_type,
            "size": len(art.body),
        }
        if stored:
            info["url"] = f"/v1/jobs/{job_id}/artifacts/{art.name}"
        else:
            info["dropped"] = f"larger than the owner's artifact budget ({budget} bytes)"
        if evicted:
            log.info("artifact budget: evicted %d older", evicted, extra={"job_id": job_id})
        infos.append(info)
    return infos


def run_collector(task: Task, job_id: str, collector: str) -> str:  # type: ignore[type-arg]
    """Run one collector of one job and record the outcome; return what happened.

    Redis unreachable (restarting): the task is retried later instead of
    failing, since Celery would ack a failed task and the record would never be
    written (celery#8588); the reaper reconciles whatever this misses.
    """
    try:
        return _run(task, job_id, collector)
    except RedisError as exc:
        settings = runtime().settings
        delay = backoff_delay(
            task.request.retries + 1, base=1.0, cap=max(1.0, settings.retry_backoff_max)
        )
        log.warning("redis unreachable; task retried in %.1fs", delay, extra={"job_id": job_id})
        raise task.retry(countdown=delay, max_retries=None, exc=exc) from exc


def _record(
    rt: JobContext, job_id: str, collector: str, status: str, attempt: int, body: dict[str, Any]
) -> str:
    """Record a finished collection, riding out a short Redis outage (a few seconds)."""
    for pause in (0.2, 0.5, 1.0, 2.0):
        try:
            return rt.store.record(job_id, collector, status, attempt, body).outcome
        except RedisError:
            time.sleep(pause)
    return rt.store.record(job_id, collector, status, attempt, body).outcome


def _run(task: Task, job_id: str, collector: str) -> str:  # type: ignore[type-arg]
    rt = runtime()
    settings = rt.settings
    begin = rt.store.begin(
        job_id,
        collector,
        heartbeat_timeout=settings.heartbeat_timeout,
        max_redeliveries=settings.max_redeliveries,
    )
    if begin.outcome == "missing":
        log.info("job gone, skipping", extra={"job_id": job_id, "collector": collector})
        return "missing"
    if begin.outcome == "done":  # cancelled or expired, or a redelivery of done work
        return "skipped"
    attempt = begin.attempt
    if begin.outcome == "limit":
        error = RedeliveryLimit(
            f"every delivery died before recording; gave up after "
            f"{settings.max_redeliveries} redeliveries"
        )
        body: dict[str, Any] = {"data": None, "artifacts": [], "error": error.to_dict()}
        return rt.store.record(job_id, collector, CollectorStatus.FAILED, attempt, body).outcome
    spec = rt.store.spec(job_id, collector)
    if spec is None:
        return "missing"
    started_at, t0 = utcnow(), time.perf_counter()

    def timing() -> dict[str, Any]:
        return {
            "started_at": started_at,
            "finished_at": utcnow(),
            "duration_ms": round((time.perf_counter() - t0) * 1000, 1),
        }

    ctx = CollectContext(policy=rt.policy, job_id=job_id, attempt=attempt)
    with heartbeat(
        rt.store,
        job_id,
        collector,
        interval=settings.heartbeat_interval,
        timeout=settings.heartbeat_timeout,
        max_runtime=settings.pool_for(collector).hard_time_limit + settings.heartbeat_interval,
    ):
        host, limits = host_of(spec.target), settings.pool_for(collector)
        with rt.host_slots.slot(
            host, hold_max=limits.hard_time_limit, wait_max=limits.soft_time_limit / 2
        ) as busy:
            outcome = busy or rt.breakers.call(
                host, lambda: _collect(rt, spec.target, spec.options, collector, ctx)
            )
    if isinstance(outcome, CollectorError):
        if outcome.retryable and attempt <= settings.max_retries:
            raise _retry(task, settings, job_id, collector, attempt, outcome, timing())
        if isinstance(outcome, TransientResponse):
            outcome = outcome.result  # retries exhausted: the target's own answer is data
    if isinstance(outcome, CollectorError):
        body = {**timing(), "data": None, "artifacts": [], "error": outcome.to_dict()}
        return _record(rt, job_id, collector, CollectorStatus.FAILED, attempt, body)
    body = {
        **timing(),
        "data": outcome.data,
        "artifacts": _artifacts(rt, job_id, outcome),
        "error": None,
    }
    return _record(rt, job_id, collector, CollectorStatus.SUCCEEDED, attempt, body)


def _collect(
    rt: JobContext, target: str, raw_options: dict[str, Any], collector: str, ctx: CollectContext
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
    runtime().store.record(
        job_id,
        collector,
        CollectorStatus.RETRYING,
        attempt,
        body,
        watch_in=delay + settings.reap_queued_after,
    )
    # max_retries=None: the attempt budget is ours (the store counts redeliveries too).
    return task.retry(countdown=delay, max_retries=None, exc=exc)


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
