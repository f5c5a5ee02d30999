"""The reaper: no collector stays `queued`, `retrying` or `running` forever.

Every unfinished collector has an entry in the store's watch set, with the
time by which something should have happened to it: its start (queued), its
next attempt (retrying) or its next heartbeat (running). `reap` (run by the
periodic ``maintenance.reap`` task) looks at the overdue ones:

- job past ``JOB_DEADLINE`` → the job is `expired` (unfinished collectors `skipped`);
- running, heartbeat lapsed (killed worker, frozen process) → requeued;
- queued/retrying (or requeued already) and its queue holds no ready message
  (the message vanished, or sits unacked with a consumer that stopped) →
  requeued; with messages still waiting in the queue it is looked at later;
- requeued `REAP_MAX_REQUEUES` times already → `failed` with `lost`.

A requeue publishes the collector's message again. It is safe even if the
old one turns up after all: recording is forward-only, so a duplicate
delivery either finds the collector finished and skips, or loses the race.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from celery import Celery
from redis.exceptions import RedisError

from app.jobs.broker import PUBLISH_ERRORS, publish, queue_depths
from app.jobs.context import JobContext
from app.jobs.envelope import failed_body
from app.jobs.errors import Lost
from app.jobs.finalize import announce
from app.jobs.names import collector_queue
from app.jobs.store import Watched
from app.rediskeys import split_watch_member, watch_member
from schemas.status import TERMINAL_COLLECTOR, CollectorStatus, JobStatus

__all__ = ["ReapReport", "last_pass", "reap", "reap_exclusively"]

log = logging.getLogger("collectq.reaper")


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    postponed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requeued": self.requeued,
            "failed": self.failed,
            "expired": self.expired,
            "postponed": self.postponed,
        }


def _age(created_at: str, now: float) -> float:
    return now - datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()


def reap_exclusively(rt: JobContext, celery: Celery) -> dict[str, Any]:
    """One pass, unless another reaper holds the lock (a pass that overlaps another
    would only race it); returns what was done, as the task reports it."""
    lock = rt.redis.lock(
        rt.store.keys.reaper_lock,
        timeout=max(30.0, rt.settings.reap_interval * 2),
        blocking=False,
    )
    if not lock.acquire():
        return {"skipped": "another reaper is running"}
    try:
        return reap(rt, celery).as_dict()
    finally:
        lock.release()


def reap(rt: JobContext, celery: Celery, *, limit: int = 500) -> ReapReport:
    """One pass over the overdue collectors; returns what was done."""
    settings, store = rt.settings, rt.store
    report = ReapReport()
    now = time.time()
    members = store.overdue(now, limit)
    depths: dict[str, int | None] | None = None
    for member in members:
        w = store.watched(member)
        if w is None:
            continue
        if _age(w.created_at, now) > settings.job_deadline:
            if _expire(rt, w.job_id):
                announce(celery, w.job_id, timeout=settings.publish_timeout)
            report.expired.append(w.job_id)
            continue
        # A queued or retrying collector, or a lapsed one requeued already, may still
        # have its message waiting in the queue: only an empty queue proves it gone.
        if w.status != CollectorStatus.RUNNING or w.requeues:
            if depths is None:
                depths = _depths(rt, celery, members)
            if depths.get(collector_queue(w.collector)) != 0:
                store.postpone(member, settings.reap_queued_after)  # may still be waiting
                report.postponed += 1
                continue
        _resolve(rt, celery, w, now, report)
    if report.requeued or report.failed or report.expired:
        log.warning("reaper acted", extra=report.as_dict())
    _note_pass(rt, now, report)
    return report


def _expire(rt: JobContext, job_id: str) -> bool:
    """End a job past its deadline; its unfinished collectors count as `expired`.
    True if this call made the job final."""
    before = rt.store.get(job_id)
    status = rt.store.expire(job_id, f"not finished within {rt.settings.job_deadline}s")
    if before is not None and status == JobStatus.EXPIRED:
        for name, result in before["results"].items():
            if result.get("status") not in TERMINAL_COLLECTOR:
                rt.observer.finished(name, JobStatus.EXPIRED)
    return before is not None and status == JobStatus.EXPIRED


def _note_pass(rt: JobContext, now: float, report: ReapReport) -> None:
    # What /v1/status shows: a reaper that stopped ticking (beat gone, no
    # maintenance worker) is otherwise invisible until a job gets stuck.
    rt.redis.hset(
        rt.store.keys.reaper_last_pass,
        mapping={
            "at": now,
            "requeued": len(report.requeued),
            "failed": len(report.failed),
            "expired": len(report.expired),
            "postponed": report.postponed,
        },
    )


def last_pass(rt: JobContext, now: float | None = None) -> dict[str, Any]:
    """The reaper's last pass: when (seconds ago), what it did, and whether it is on time."""
    raw = cast(dict[bytes, bytes], rt.redis.hgetall(rt.store.keys.reaper_last_pass))
    if not raw:
        return {"last_pass_ago_s": None, "on_time": False}
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    ago = (time.time() if now is None else now) - float(fields.pop("at"))
    return {
        "last_pass_ago_s": round(ago, 1),
        # a few missed ticks are normal under load; many mean beat or the worker is gone
        "on_time": ago <= 3 * rt.settings.reap_interval + 5,
        **{k: int(v) for k, v in fields.items()},
    }


def _depths(rt: JobContext, celery: Celery, members: list[str]) -> dict[str, int | None]:
    names = {split_watch_member(m)[1] for m in members}
    try:
        return queue_depths(celery, [collector_queue(n) for n in names])
    except PUBLISH_ERRORS:
        return {}  # broker unreachable: nothing can be requeued now anyway


def _resolve(rt: JobContext, celery: Celery, w: Watched, now: float, report: ReapReport) -> None:
    settings, store = rt.settings, rt.store
    decision = store.claim_overdue(w, now=now, max_requeues=settings.reap_max_requeues)
    member = watch_member(w.job_id, w.collector)
    if decision == "fail":
        error = Lost(
            f"no delivery finished after {settings.reap_max_requeues} requeues "
            f"(last seen {w.status})"
        )
        body = failed_body(error)
        done = store.record(w.job_id, w.collector, CollectorStatus.FAILED, w.attempt, body)
        if done.recorded:
            rt.observer.errored(w.collector, error.type)
            rt.observer.finished(w.collector, CollectorStatus.FAILED)
        if done.outcome == "announce":  # the job's finalizer (app.jobs.finalize)
            announce(celery, w.job_id, timeout=settings.publish_timeout)
        report.failed.append(member)
    elif decision == "requeue":
        try:
            publish(celery, rt, w.job_id, [w.collector], owner=w.owner, request_id=w.request_id)
            report.requeued.append(member)
        except PUBLISH_ERRORS + (RedisError,):
            log.warning("requeue failed; next pass retries", extra={"job_id": w.job_id})
