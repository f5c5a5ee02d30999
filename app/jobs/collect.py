"""Collect: run one collector of one job and record what happened (no Celery here).

The Celery task (`tasks.collect`) only adapts this command: it calls `collect`,
turns a `Retry` into ``task.retry`` and a Redis outage into a later delivery.
The steps, each against the store's atomic scripts (docs/architecture.md,
"The way of a job"):

1. begin: the collector becomes `running` (attempt + 1), unless the job is gone,
   the collector finished already (cancelled, expired, a redelivery of done work)
   or too many deliveries died before recording (a poison message: `failed`);
2. run the collector under a heartbeat, the host's concurrency slot and its
   circuit breaker;
3. a retryable failure with attempts left is recorded `retrying` and returned as
   a `Retry` (exponential backoff with full jitter, honouring Retry-After);
   retries, backoff, breaker and host cap are the collector's policy
   (``Settings.policy_for``), its retries narrowed by the job's ``options.<c>.retries``;
   anything else is recorded `succeeded` or `failed`, artifacts stored first.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from opentelemetry import trace
from redis.exceptions import RedisError

from app.jobs.backoff import backoff_delay
from app.jobs.breaker import breaker_key, host_of
from app.jobs.context import JobContext
from app.jobs.envelope import Stopwatch, failed_body, succeeded_body
from app.jobs.errors import RedeliveryLimit, TimeLimitExceeded
from app.jobs.heartbeat import heartbeat
from app.jobs.store import JobSpec, Transition
from app.options import CollectorPolicy
from collectors.base import CollectContext, CollectorError, Result, TransientResponse
from collectors.runner import run_collector_once
from schemas.policy import split_policy_options
from schemas.status import CollectorStatus

__all__ = ["Retry", "collect", "outage_delay", "record_hard_time_limit"]

log = logging.getLogger("collectq.collect")

# Pauses between tries to record a finished collection while Redis restarts.
RECORD_PAUSES = (0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Retry:
    """Deliver the collector again in `delay` seconds (its `retrying` state is recorded)."""

    delay: float
    error: CollectorError


def collect(
    ctx: JobContext,
    job_id: str,
    collector: str,
    *,
    interrupts: tuple[type[BaseException], ...] = (),
) -> str | Retry:
    """Run `collector` of `job_id` once; return the store's outcome, or a Retry.

    `interrupts`: exceptions that end the call from outside (Celery's soft time
    limit); the collector is then recorded failed with `time_limit`. A RedisError
    propagates: the caller delivers the collector again later.
    """
    settings = ctx.settings
    begin = ctx.store.begin(
        job_id,
        collector,
        heartbeat_timeout=settings.heartbeat_timeout,
        max_redeliveries=settings.max_redeliveries,
    )
    if begin.outcome == "missing":
        log.info("job gone, skipping", extra={"job_id": job_id, "collector": collector})
        return "missing"
    if begin.outcome == "done":
        return "skipped"
    if begin.outcome == "limit":
        error = RedeliveryLimit(
            f"every delivery died before recording; gave up after "
            f"{settings.max_redeliveries} redeliveries"
        )
        ctx.observer.errored(collector, error.type)
        return _record(
            ctx, job_id, collector, CollectorStatus.FAILED, begin.attempt, failed_body(error)
        )
    spec = begin.spec
    if spec is None:  # the job went between the start and the read (cannot in one script)
        return "missing"
    own, narrowing = split_policy_options(spec.options)
    spec = dataclasses.replace(spec, options=own)
    policy = settings.policy_for(collector)
    if "retries" in narrowing:  # checked at submit: within the policy
        asked = int(narrowing["retries"])
        policy = dataclasses.replace(policy, retries=min(policy.retries, asked))
    ctx.observer.started(collector)
    watch = Stopwatch()
    # The collector's span (a child of the task's, when tracing is on; a no-op otherwise).
    # The host only: a target URL may carry credentials or a tenant's query.
    with trace.get_tracer(__name__).start_as_current_span(
        "collector.run",
        attributes={
            "collectq.collector": collector,
            "collectq.job_id": job_id,
            "collectq.attempt": begin.attempt,
            "server.address": host_of(spec.target),
        },
    ) as span:
        outcome = _run_guarded(ctx, spec, collector, policy, begin.attempt, interrupts)
        if isinstance(outcome, CollectorError) and span.is_recording():
            span.set_attribute("collectq.error", outcome.type)
        return _conclude(ctx, spec, collector, policy, begin.attempt, outcome, watch)


def _run_guarded(
    ctx: JobContext,
    spec: JobSpec,
    collector: str,
    policy: CollectorPolicy,
    attempt: int,
    interrupts: tuple[type[BaseException], ...],
) -> Result | CollectorError:
    """The collector's call under its heartbeat, the host's slot and its breaker."""
    settings, limits = ctx.settings, ctx.settings.pool_for(collector)
    call_ctx = CollectContext(policy=ctx.policy, job_id=spec.id, attempt=attempt)

    def call() -> Result | CollectorError:
        try:
            return run_collector_once(
                ctx.registry.get(collector), spec.target, spec.options, call_ctx, interrupts
            )
        except interrupts:
            return TimeLimitExceeded("collector exceeded its soft time limit")

    host = host_of(spec.target)
    with (
        heartbeat(
            ctx.store,
            spec.id,
            collector,
            interval=settings.heartbeat_interval,
            timeout=settings.heartbeat_timeout,
            max_runtime=limits.hard_time_limit + settings.heartbeat_interval,
        ),
        ctx.host_slots.slot(
            collector,
            host,
            cap=policy.host_concurrency,
            hold_max=limits.hard_time_limit,
            wait_max=limits.soft_time_limit / 2,
        ) as busy,
    ):
        # the breaker is the origin's (scheme, host, port), not the whole host's: one
        # tenant's failing port must not fail everyone's jobs to that host fast
        breaker = breaker_key(spec.target, collector, spec.options)
        return busy or ctx.breakers.call(breaker, call)  # its policy: the key's collector


def _conclude(
    ctx: JobContext,
    spec: JobSpec,
    collector: str,
    policy: CollectorPolicy,
    attempt: int,
    outcome: Result | CollectorError,
    watch: Stopwatch,
) -> str | Retry:
    settings = ctx.settings
    if isinstance(outcome, CollectorError):
        ctx.observer.errored(collector, outcome.type)
        if outcome.retryable and attempt <= policy.retries:
            _ran(ctx, collector, CollectorStatus.RETRYING, watch)
            return _retry_later(ctx, spec.id, collector, policy, attempt, outcome, watch)
        if isinstance(outcome, TransientResponse):
            outcome = outcome.result  # retries exhausted: the target's own answer is data
    if isinstance(outcome, CollectorError):
        _ran(ctx, collector, CollectorStatus.FAILED, watch)
        body = failed_body(outcome, **watch.timing())
        return _record(ctx, spec.id, collector, CollectorStatus.FAILED, attempt, body)
    _ran(ctx, collector, CollectorStatus.SUCCEEDED, watch)
    artifacts = ctx.store.artifacts.put_all(
        spec.id, outcome.artifacts, budget=settings.artifact_budget_bytes, owner=spec.owner
    )
    body = succeeded_body(outcome.data, artifacts, **watch.timing())
    return _record(ctx, spec.id, collector, CollectorStatus.SUCCEEDED, attempt, body)


def _retry_later(
    ctx: JobContext,
    job_id: str,
    collector: str,
    policy: CollectorPolicy,
    attempt: int,
    error: CollectorError,
    watch: Stopwatch,
) -> Retry:
    settings = ctx.settings
    delay = backoff_delay(
        attempt,
        base=policy.backoff_base,
        cap=policy.backoff_max,
        retry_after=error.retry_after,
    )
    body = failed_body(error, **watch.timing(), retry_in_s=round(delay, 3))
    ctx.store.record(
        job_id,
        collector,
        CollectorStatus.RETRYING,
        attempt,
        body,
        watch_in=delay + settings.reap_queued_after,
    )
    return Retry(delay, error)


def _ran(ctx: JobContext, collector: str, outcome: str, watch: Stopwatch) -> None:
    """A run ended (`succeeded`, `failed` or `retrying`): the observer and the span know."""
    ctx.observer.ran(collector, outcome, _seconds(watch))
    span = trace.get_current_span()
    span.set_attribute("collectq.outcome", str(outcome))
    if outcome == CollectorStatus.FAILED:
        span.set_status(trace.StatusCode.ERROR)


def _seconds(watch: Stopwatch) -> float:
    return float(watch.timing()["duration_ms"]) / 1000


def _record(
    ctx: JobContext, job_id: str, collector: str, status: str, attempt: int, body: dict[str, object]
) -> str:
    """Record a finished collection, riding out a short Redis outage (a few seconds)."""
    for pause in RECORD_PAUSES:
        try:
            return _recorded(
                ctx, collector, status, ctx.store.record(job_id, collector, status, attempt, body)
            )
        except RedisError:
            time.sleep(pause)
    return _recorded(
        ctx, collector, status, ctx.store.record(job_id, collector, status, attempt, body)
    )


def _recorded(ctx: JobContext, collector: str, status: str, transition: Transition) -> str:
    if transition.recorded:  # counted once: a duplicate delivery's record is refused
        ctx.observer.finished(collector, status)
    return transition.outcome


def outage_delay(ctx: JobContext, deliveries: int) -> float:
    """When to deliver a collector again after Redis was unreachable (celery#8588:
    a failed task is acked and its record never written, so it must not fail)."""
    return backoff_delay(deliveries, base=1.0, cap=max(1.0, ctx.settings.retry_backoff_max))


def record_hard_time_limit(ctx: JobContext, job_id: str, collector: str) -> str:
    """The hard time limit killed the process running `collector`: it fails with
    `time_limit` now, instead of staying `running` until the reaper notices.
    Returns the store's outcome (`final`/`announce`: this made the job final)."""
    spec = ctx.store.spec(job_id, collector)
    if spec is None:
        return "missing"
    limit = ctx.settings.pool_for(collector).hard_time_limit
    error = TimeLimitExceeded(f"killed after the hard time limit ({limit}s)")
    ctx.observer.errored(collector, error.type)
    ctx.observer.ran(collector, CollectorStatus.FAILED, float(limit))
    status, body = CollectorStatus.FAILED, failed_body(error)
    return _recorded(
        ctx, collector, status, ctx.store.record(job_id, collector, status, spec.attempt, body)
    )
