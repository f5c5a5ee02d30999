"""Job service: the one call each API view makes (submit, get, wait, cancel).

Submit order (docs/architecture.md, "Reliability"): validate → write the record →
publish with broker confirms and a bounded wait → 202. If the broker cannot take
the messages the record is deleted again, so no phantom `queued` job is left behind.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from celery import Celery
from marshmallow import ValidationError
from redis.exceptions import RedisError

from app.errors import (
    Conflict,
    DependencyUnavailable,
    NotFound,
    QuotaExceeded,
    ValidationFailed,
)
from app.events.hub import Subscription, hub_for
from app.jobs import reuse
from app.jobs.broker import PUBLISH_ERRORS, publish
from app.jobs.callback import check_callback_url
from app.jobs.context import JobContext
from app.jobs.finalize import announce
from app.jobs.ids import new_id
from app.jobs.reuse import IdempotencyKeyReused
from app.rediskeys import RedisKeys
from collectors.base import Collector
from schemas.policy import narrowing_errors, split_policy_options
from schemas.status import TERMINAL_COLLECTOR, CollectorStatus, JobStatus

__all__ = [
    "Submitted",
    "cancel_job",
    "get_job",
    "submit_job",
    "submit_request",
    "wait_job",
    "wait_slot",
]

log = logging.getLogger("collectq.jobs")

# A wait slot outlives its wait by this much before it frees itself (a crashed API process).
WAIT_SLOT_GRACE = 10.0
WAIT_RETRY_AFTER = 1
# KEYS slots. ARGV: now, expires at, token, cap. Returns 1 if the slot was taken. The key
# expires with its longest-held slot.
_TAKE_WAIT_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2]) * 1000) + 1000)
return 1
"""


def _option_errors(rt: JobContext, name: str, collector: Collector, given: Any) -> Any:
    """What is wrong with a collector's options (None: nothing): the collector's own,
    then the policy keys a job may narrow (`schemas.policy`)."""
    own, narrowing = split_policy_options(given) if isinstance(given, dict) else (given, {})
    try:
        collector.options_schema().load(own)
    except ValidationError as exc:
        return exc.messages
    return narrowing_errors(narrowing, rt.settings.policy_for(name).retries) or None


def _check_collectors(rt: JobContext, names: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """Validate collector names and their options; return the loaded options."""
    errors: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    for i, name in enumerate(names):
        info = rt.registry.info(name)
        if info is None:
            known = ", ".join(rt.registry.names())
            errors.setdefault("collectors", {})[str(i)] = [
                f"unknown collector {name!r} (known: {known})"
            ]
        elif not info.available or info.collector is None:
            errors.setdefault("collectors", {})[str(i)] = [
                f"collector {name!r} is unavailable: {info.reason}"
            ]
        else:
            # Validate now so a bad option is a 422, not a failed job later;
            # store what the client sent (defaults are applied by the task).
            problems = _option_errors(rt, name, info.collector, options.get(name, {}))
            if problems:
                errors.setdefault("options", {})[name] = problems
            else:
                loaded[name] = options.get(name, {})
    for name in set(options) - set(names):  # validated like the rest, then dropped
        info = rt.registry.info(name)
        if info is None or info.collector is None:
            errors.setdefault("options", {})[name] = ["not a collector of this service"]
            continue
        problems = _option_errors(rt, name, info.collector, options[name])
        if problems:
            errors.setdefault("options", {})[name] = problems
    if errors:
        raise ValidationFailed(errors)
    return loaded


# the schedules' service checks a job template as a submit does
check_collectors = _check_collectors


def submit_job(
    rt: JobContext,
    celery: Celery,
    data: dict[str, Any],
    *,
    owner: str,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    body_hash: str | None = None,
    callback_url: str | None = None,
    callback_on: list[str] | None = None,
    callback_artifacts: str | None = None,
    schedule_id: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Accept a job; return (envelope, created). created=False for an idempotent repeat.

    `body_hash` (`reuse.request_hash`) is kept with the Idempotency-Key: the same key
    with another body is refused (`IdempotencyKeyReused`, 422).
    """
    collectors: list[str] = data["collectors"]
    options = _check_collectors(rt, collectors, data.get("options") or {})
    # the job's webhook: the request's, or the caller's (a schedule's callback)
    callback_url = callback_url or data.get("callback_url")
    callback_on = callback_on or data.get("callback_on")
    callback_artifacts = callback_artifacts or data.get("callback_artifacts")
    if callback_url:
        check_callback_url(callback_url, rt.policy)
    job_id = new_id("j_")
    if idempotency_key:
        replay = _claim_key(rt, owner, idempotency_key, job_id, body_hash)
        if replay is not None:
            return replay, False
    try:
        _check_quota(rt, owner)
    except QuotaExceeded:
        if idempotency_key:
            rt.store.release_idempotency_key(owner, idempotency_key)
        raise
    envelope = rt.store.create(
        job_id=job_id,
        owner=owner,
        target=data["target"],
        collectors=collectors,
        options=options,
        labels=data.get("labels") or {},
        request_id=request_id,
        callback_url=callback_url,
        callback_on=callback_on,
        callback_artifacts=callback_artifacts,
        schedule_id=schedule_id,  # a schedule's run (app.schedules)
    )
    try:
        publish(celery, rt, job_id, collectors, owner=owner, request_id=request_id)
    except PUBLISH_ERRORS as exc:
        log.warning("publish failed, job withdrawn", extra={"job_id": job_id, "error": repr(exc)})
        _withdraw(rt, job_id, owner, idempotency_key)
        raise DependencyUnavailable("broker") from exc
    rt.observer.submitted(collectors)
    return envelope, True


def _claim_key(
    rt: JobContext, owner: str, key: str, job_id: str, body_hash: str | None
) -> dict[str, Any] | None:
    """Bind `key` to `job_id`; the envelope of the job bound earlier (a replay), if any."""
    earlier = rt.store.claim_idempotency_key(owner, key, job_id, body_hash)
    if earlier is None:
        return None
    earlier_id, earlier_hash = earlier
    if body_hash and earlier_hash and earlier_hash != body_hash:
        raise IdempotencyKeyReused()
    envelope = rt.store.get(earlier_id)
    if envelope is not None:
        return envelope
    # the earlier job expired or was never accepted: take the key over
    rt.store.release_idempotency_key(owner, key)
    rt.store.claim_idempotency_key(owner, key, job_id, body_hash)
    return None


@dataclass(frozen=True)
class Submitted:
    """What a submit did: the job's envelope, whether it was created now, and whether an
    identical job was reused instead (`reuse.IN_FLIGHT` / `reuse.SUCCEEDED`)."""

    envelope: dict[str, Any]
    created: bool  # False: an idempotent replay, or a reused job
    reused: str | None = None


def submit_request(
    rt: JobContext,
    celery: Celery,
    data: dict[str, Any],
    *,
    owner: str,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> Submitted:
    """A client's submit (POST /v1/jobs, a batch item): `submit_job` plus reuse.

    An identical job of `owner` that is still queued/running is answered instead of a new
    one, and with `max_age` (seconds, ≤ `MAX_AGE_MAX`) also one that succeeded at most
    that long ago; `fresh` asks for a new job whatever runs (docs/decisions.md,
    "Scheduling: idempotency, reuse and batch"). Every job created here becomes a
    candidate for later requests. An Idempotency-Key is bound to the reused job, so a
    retry with it answers the same job.
    """
    body_hash = reuse.request_hash(data)
    collectors: list[str] = data["collectors"]
    identity = reuse.identity_hash(
        data["target"],
        collectors,
        data.get("options") or {},
        callback_url=data.get("callback_url"),
        callback_on=data.get("callback_on"),
        callback_artifacts=data.get("callback_artifacts"),
    )
    max_age: int = data.get("max_age") or 0  # 0: in-flight jobs only
    if max_age > rt.settings.max_age_max:
        raise ValidationFailed(
            {"max_age": [f"must be at most {rt.settings.max_age_max} (seconds)"]}
        )
    if not data.get("fresh"):
        found = reuse.find_reusable(rt.redis, rt.store.keys, owner, identity, max_age)
        envelope = rt.store.get(found.job_id) if found else None
        if found and envelope is not None:
            _check_collectors(rt, collectors, data.get("options") or {})  # still 422 if bad
            if idempotency_key:
                replay = _claim_key(rt, owner, idempotency_key, found.job_id, body_hash)
                if replay is not None:
                    return Submitted(replay, False)
            return Submitted(envelope, False, found.kind)
    envelope, created = submit_job(
        rt,
        celery,
        data,
        owner=owner,
        idempotency_key=idempotency_key,
        request_id=request_id,
        body_hash=body_hash,
    )
    if created:
        reuse.remember(rt.redis, rt.store.keys, owner, identity, envelope["id"], rt.store.ttl)
    return Submitted(envelope, created)


def _check_quota(rt: JobContext, owner: str) -> None:
    # Checked before the write, not atomically with it: concurrent submits can
    # overshoot by at most the number of in-flight requests, which is fine for a quota.
    cap = rt.settings.max_queued_jobs
    if cap and rt.store.queued_count(owner) >= cap:
        raise QuotaExceeded(
            f"{cap} jobs are queued for this owner already; retry when some have started", cap
        )


def _withdraw(rt: JobContext, job_id: str, owner: str, idempotency_key: str | None) -> None:
    try:
        rt.store.delete(job_id, owner)
        if idempotency_key:
            rt.store.release_idempotency_key(owner, idempotency_key)
    except RedisError:  # the tasks that did go out find no record and do nothing
        log.exception("could not withdraw job", extra={"job_id": job_id})


def get_job(rt: JobContext, job_id: str, owner: str | None) -> dict[str, Any]:
    """The envelope; NotFound if missing or (when `owner` is set) someone else's."""
    envelope = rt.store.get(job_id, owner)
    if envelope is None:
        raise NotFound(f"no job {job_id}")
    return envelope


def wait_job(
    rt: JobContext, job_id: str, owner: str | None, wait: float, client: str | None = None
) -> dict[str, Any]:
    """Like get_job, but wait up to `wait` seconds (capped by settings) for a terminal state.

    The wait listens to the job's live events through this process's event hub (one Redis
    connection for all waiters, `app.events.hub`), no polling. Each `client` may have at
    most `MAX_WAITS_PER_CLIENT` waits and event streams in flight across all API
    processes (QuotaExceeded beyond).
    """
    budget = min(wait, rt.settings.max_wait)
    if budget <= 0:
        return get_job(rt, job_id, owner)
    hub = hub_for(rt.settings.redis_url, rt.store.keys.all_events)
    with hub.subscribe(job_id=job_id) as sub:
        # subscribed first, then read once: no final event is missed, and no second read
        envelope = get_job(rt, job_id, owner)
        if rt.store.is_terminal(envelope["status"]):
            return envelope  # answered at once: no slot needed
        with wait_slot(rt, client, budget):
            return _wait_terminal(rt, job_id, owner, envelope, sub, budget)


def _wait_terminal(
    rt: JobContext,
    job_id: str,
    owner: str | None,
    envelope: dict[str, Any],
    sub: Subscription,
    budget: float,
) -> dict[str, Any]:
    """Read the job again on each final event until it is terminal or `budget` is spent."""
    deadline = time.monotonic() + budget
    while not rt.store.is_terminal(envelope["status"]):
        events = sub.take(deadline - time.monotonic())
        if not events:  # the budget is spent (or the hub dropped this slow waiter):
            # the state now (a collector may have started meanwhile); Redis gone → 503
            return get_job(rt, job_id, owner)
        if any(event.final for event in events):
            envelope = get_job(rt, job_id, owner)
    return envelope


@contextmanager
def wait_slot(rt: JobContext, client: str | None, hold: float) -> Iterator[None]:
    """Hold one of `client`'s wait slots for the block (a zset member scored by its expiry):
    a `?wait=` long-poll or an event stream (api/events.py)."""
    cap = rt.settings.max_waits_per_client
    if cap <= 0 or not client:
        yield
        return
    key = RedisKeys(rt.settings.redis_prefix).wait_slots(client)
    token, now = uuid.uuid4().hex, time.time()
    take = rt.redis.register_script(_TAKE_WAIT_SLOT)
    if not cast(int, take(keys=[key], args=[now, now + hold + WAIT_SLOT_GRACE, token, cap])):
        raise QuotaExceeded(
            f"{cap} waiting requests (?wait= long-polls, event streams) of this client are in "
            "flight already; retry when one has ended, or read without wait",
            cap,
            retry_after=WAIT_RETRY_AFTER,
        )
    try:
        yield
    finally:
        try:
            rt.redis.zrem(key, token)
        except RedisError:  # the slot frees itself when it expires
            log.warning("could not release a wait slot", extra={"client": client})


def cancel_job(rt: JobContext, celery: Celery, job_id: str, owner: str | None) -> dict[str, Any]:
    envelope = get_job(rt, job_id, owner)
    if rt.store.is_terminal(envelope["status"]):
        raise Conflict(f"job {job_id} already finished as {envelope['status']}")
    if rt.store.cancel(job_id) == JobStatus.CANCELLED:
        for name, result in envelope["results"].items():
            if result.get("status") not in TERMINAL_COLLECTOR:
                rt.observer.finished(name, CollectorStatus.CANCELLED)
        announce(celery, job_id, timeout=rt.settings.publish_timeout)  # its finalizer
    # The record is final now. Queued messages find their collector cancelled at
    # start and skip: that check is in Redis, so it survives worker restarts (a
    # worker's own revoke list does not). Running work on a prefork pool is
    # terminated; on a thread pool it cannot be interrupted, finishes its call
    # (bounded by its own timeout) and what it records is refused.
    names = envelope["collectors"]
    prefork = [n for n in names if rt.settings.pool_for(n).pool == "prefork"]
    others = [n for n in names if n not in prefork]
    try:
        for group, terminate in ((prefork, True), (others, False)):
            if group:
                celery.control.revoke(
                    [f"{job_id}.{name}" for name in group], terminate=terminate, signal="SIGKILL"
                )
    except PUBLISH_ERRORS:
        log.warning("revoke broadcast failed", extra={"job_id": job_id})
    return get_job(rt, job_id, owner)
