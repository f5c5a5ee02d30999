"""Schedules: the calls the API and the fire task make (no Flask here).

The way of a scheduled job (docs/architecture.md): the API saves the record and the
redbeat entry → the active beat sends ``schedules.fire(schedule_id, due)`` when the entry
is due → `fire` checks paused / dates / window / concurrency, fires each tick once, and
submits the job through `app.jobs.service.submit_job` with the schedule's id and callback
→ the run is recorded; its outcome is read from the job when runs are listed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from celery import Celery

from app.errors import NotFound, ValidationFailed
from app.jobs import service as jobs
from app.jobs.context import JobContext
from app.jobs.ids import new_id
from app.rediskeys import RedisKeys
from app.schedules.entries import delete_entry, entry_due_at, save_entry, trigger_schedule
from app.schedules.outcomes import FIRED, MISSED, SKIPPED_CONCURRENCY, SKIPPED_WINDOW
from app.schedules.store import ScheduleStore
from app.schedules.trigger import CronSchedule, Window, zone

__all__ = [
    "FireResult",
    "create_schedule",
    "delete_schedule",
    "fire",
    "get_schedule",
    "list_runs",
    "list_schedules",
    "load_schedule",
    "next_fire_at",
    "run_finished",
    "run_now",
    "schedule_store",
    "set_paused",
    "update_schedule",
]

log = logging.getLogger("collectq.schedules")

# a tick waiting for a slot (policy `queue`) looks again this often, seconds
QUEUE_RETRY = 1.0
# how many next ticks are tried to find one inside the window and the dates
NEXT_SEARCH = 2000
# fields that change the beat entry when updated
_TRIGGER_FIELDS = ("trigger", "timezone", "jitter")


def schedule_store(rt: JobContext) -> ScheduleStore:
    s = rt.settings
    return ScheduleStore(
        rt.redis, RedisKeys(s.redis_prefix), s.schedule_runs_max, s.schedule_runs_max_age
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# validation beyond the schema (settings-dependent, registry-dependent) ---------------
def _check(rt: JobContext, data: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    job = data["job"]
    try:
        job["options"] = jobs.check_collectors(rt, job["collectors"], job.get("options") or {})
    except ValidationFailed as exc:
        errors["job"] = exc.errors
    interval = data["trigger"].get("interval")
    if interval is not None and interval < rt.settings.schedule_min_interval:
        errors["trigger"] = {
            "interval": [f"must be at least {rt.settings.schedule_min_interval:g} seconds"]
        }
    if data.get("jitter", 0) > rt.settings.schedule_max_jitter:
        errors["jitter"] = [f"must be at most {rt.settings.schedule_max_jitter:g} seconds"]
    if errors:
        raise ValidationFailed(errors)
    return data


def _first_run_anchor(definition: dict[str, Any]) -> datetime:
    """The `last_run_at` a new entry starts from: its first tick is the first after it
    (and not before `start_at`)."""
    now = _now()
    start = _ts(definition.get("start_at"))
    trigger = definition["trigger"]
    if start is None or start <= now:
        return now
    if trigger.get("interval"):
        return start - timedelta(seconds=float(trigger["interval"]))
    return start - timedelta(microseconds=1)


def _entry_trigger(definition: dict[str, Any]) -> dict[str, Any]:
    trigger = dict(definition["trigger"])
    if trigger.get("cron"):
        trigger["timezone"] = definition.get("timezone") or "UTC"
    return trigger


def _save_entry(celery: Celery, schedule_id: str, definition: dict[str, Any]) -> None:
    save_entry(
        celery,
        schedule_id,
        _entry_trigger(definition),
        float(definition.get("jitter") or 0),
        _first_run_anchor(definition),
    )


# views -------------------------------------------------------------------------------
def next_fire_at(record: dict[str, Any], due: datetime | None) -> datetime | None:
    """The next tick that will fire: beat's next due time, moved past the window and
    the start date; None when paused, ended or never again (jitter not included)."""
    if record["paused"] or due is None:
        return None
    sched = trigger_schedule(_entry_trigger(record))
    start, end = _ts(record.get("start_at")), _ts(record.get("end_at"))
    window = Window.from_record(record.get("window"))
    tz = zone(record.get("timezone") or "UTC")
    for _ in range(NEXT_SEARCH):
        if end is not None and due > end:
            return None
        if (start is None or due >= start) and (window is None or window.contains(due, tz)):
            return due
        nxt = _after(sched, due)
        if nxt is None:
            return None
        due = nxt
    return None


def _after(sched: Any, when: datetime) -> datetime | None:
    if isinstance(sched, CronSchedule):
        return sched.next_after(when)
    step: timedelta = cast(Any, sched).run_every  # an interval (celery's `schedule`)
    return when + step


def _view(rt: JobContext, celery: Celery, record: dict[str, Any]) -> dict[str, Any]:
    due = None if record["paused"] else entry_due_at(celery, record["id"])
    record["next_fire_at"] = _iso(next_fire_at(record, due))
    record["created_at"] = _iso(datetime.fromtimestamp(record["created_at"], UTC))
    record["updated_at"] = _iso(datetime.fromtimestamp(record["updated_at"], UTC))
    return record


def load_schedule(rt: JobContext, schedule_id: str, owner: str | None) -> dict[str, Any]:
    """The stored schedule (its definition as saved); NotFound if missing or (when `owner`
    is set) someone else's."""
    store = schedule_store(rt)
    record = store.get(schedule_id)
    if record is None or (owner is not None and record["owner"] != owner):
        raise NotFound(f"no schedule {schedule_id}")
    return record


def _definition(record: dict[str, Any]) -> dict[str, Any]:
    skip = {"id", "owner", "paused", "created_at", "updated_at", "next_fire_at"}
    return {k: v for k, v in record.items() if k not in skip}


# commands ----------------------------------------------------------------------------
def create_schedule(
    rt: JobContext, celery: Celery, data: dict[str, Any], *, owner: str
) -> dict[str, Any]:
    definition = _check(rt, data)
    paused = bool(definition.pop("paused", False))
    schedule_id = new_id("s_")
    store = schedule_store(rt)
    store.create(schedule_id, owner, definition)
    if paused:
        store.set_paused(schedule_id, True)
    else:
        _save_entry(celery, schedule_id, definition)
    return get_schedule(rt, celery, schedule_id, owner)


def get_schedule(
    rt: JobContext, celery: Celery, schedule_id: str, owner: str | None
) -> dict[str, Any]:
    return _view(rt, celery, load_schedule(rt, schedule_id, owner))


def list_schedules(
    rt: JobContext, celery: Celery, owner: str | None, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    items, nxt = schedule_store(rt).page(owner, limit=limit, cursor=cursor)
    return [_view(rt, celery, r) for r in items], nxt


def update_schedule(
    rt: JobContext,
    celery: Celery,
    schedule_id: str,
    owner: str | None,
    changes: dict[str, Any],
    *,
    validate: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Apply `changes`; `validate` checks the result as a whole (the request schema)."""
    record = load_schedule(rt, schedule_id, owner)
    paused = changes.pop("paused", None)
    definition = validate({**_definition(record), **changes})
    definition.pop("paused", None)
    _check(rt, definition)
    store = schedule_store(rt)
    store.update(schedule_id, definition)
    if paused is not None and paused != record["paused"]:
        return set_paused(rt, celery, schedule_id, owner, paused)
    if not record["paused"] and any(f in changes for f in (*_TRIGGER_FIELDS, "start_at")):
        _save_entry(celery, schedule_id, definition)  # the new trigger starts afresh
    return get_schedule(rt, celery, schedule_id, owner)


def delete_schedule(rt: JobContext, celery: Celery, schedule_id: str, owner: str | None) -> None:
    record = load_schedule(rt, schedule_id, owner)
    delete_entry(celery, schedule_id)  # first: beat sends no more ticks
    schedule_store(rt).delete(schedule_id, record["owner"])
    # imported here: app.changes reads schedules through this module (load_schedule)
    from app.changes import forget

    forget(rt, schedule_id)  # its fingerprints and change history


def set_paused(
    rt: JobContext, celery: Celery, schedule_id: str, owner: str | None, paused: bool
) -> dict[str, Any]:
    record = load_schedule(rt, schedule_id, owner)
    schedule_store(rt).set_paused(schedule_id, paused)
    if paused:
        delete_entry(celery, schedule_id)
    elif record["paused"]:
        _save_entry(celery, schedule_id, _definition(record))  # ticks resume from now
    return get_schedule(rt, celery, schedule_id, owner)


def _submit(
    rt: JobContext,
    celery: Celery,
    record: dict[str, Any],
    *,
    due: float | None,
    trigger: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    callback = record.get("callback") or {}
    envelope, _ = jobs.submit_job(
        rt,
        celery,
        dict(record["job"]),
        owner=record["owner"],
        request_id=request_id,
        schedule_id=record["id"],
        callback_url=callback.get("url"),
        callback_on=callback.get("on"),
        callback_artifacts=callback.get("artifacts"),
    )
    fired = time.time()
    store = schedule_store(rt)
    store.add_running(record["id"], envelope["id"])
    store.add_run(
        record["id"],
        {"job_id": envelope["id"], "due_at": due, "fired_at": fired, "trigger": trigger},
    )
    return envelope


def run_now(
    rt: JobContext,
    celery: Celery,
    schedule_id: str,
    owner: str | None,
    *,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Submit the schedule's job at once (paused, window, dates and slots do not apply)."""
    record = load_schedule(rt, schedule_id, owner)
    return _submit(rt, celery, record, due=None, trigger="manual", request_id=request_id)


# the tick ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FireResult:
    outcome: str | None  # None: nothing to count (deleted, paused, a repeated tick, ended)
    missed: int = 0  # earlier ticks nobody fired (beat down)
    lag: float | None = None
    job_id: str | None = None
    retry_in: float | None = None  # policy `queue`: send the tick again after this


def _missed_between(record: dict[str, Any], due: datetime, now: datetime) -> int:
    """Ticks after `due` and before `now` (they were due but never sent)."""
    sched, count, when = trigger_schedule(_entry_trigger(record)), 0, due
    while count < NEXT_SEARCH:
        nxt = _after(sched, when)
        if nxt is None or nxt >= now:
            return count
        count, when = count + 1, nxt
    return count


def _prune_running(rt: JobContext, store: ScheduleStore, schedule_id: str) -> int:
    """Drop finished (or expired) jobs from the running set; return how many still run."""
    alive = 0
    for job_id in store.running(schedule_id):
        if rt.store.is_terminal(rt.store.status(job_id)) or rt.store.status(job_id) is None:
            store.release(schedule_id, job_id)
        else:
            alive += 1
    return alive


def _blocked(
    rt: JobContext,
    celery: Celery,
    store: ScheduleStore,
    record: dict[str, Any],
    due_at: datetime,
) -> FireResult | None:
    """Why this tick does not fire (dates, window, slots), or None when it may."""
    schedule_id = record["id"]
    end, start = _ts(record.get("end_at")), _ts(record.get("start_at"))
    if end is not None and due_at > end:
        delete_entry(celery, schedule_id)  # it has ended: beat need not wake for it
        return FireResult(None)
    window = Window.from_record(record.get("window"))
    if (start is not None and due_at < start) or (
        window is not None and not window.contains(due_at, zone(record.get("timezone") or "UTC"))
    ):
        return FireResult(SKIPPED_WINDOW)
    if _prune_running(rt, store, schedule_id) >= int(record.get("max_concurrent") or 1):
        hold = int(rt.settings.schedule_stale_after) * 10
        if record.get("concurrency_policy") == "queue" and store.hold_queued(
            schedule_id, due_at.timestamp(), hold
        ):
            return FireResult(None, retry_in=QUEUE_RETRY)
        return FireResult(SKIPPED_CONCURRENCY)
    return None


def fire(
    rt: JobContext,
    celery: Celery,
    schedule_id: str,
    due: float | None,
    *,
    jitter: float = 0.0,
    queued: bool = False,
) -> FireResult:
    """One tick of a schedule, sent by beat (or again while it waits for a slot).

    `jitter`: the schedule's, delaying this tick by up to that much on purpose (not late,
    and not lag)."""
    store = schedule_store(rt)
    record = store.get(schedule_id)
    if record is None:  # deleted: make sure beat forgets it too
        delete_entry(celery, schedule_id)
        return FireResult(None)
    if record["paused"]:
        return FireResult(None)
    now = _now()
    due_at = datetime.fromtimestamp(due, UTC) if due is not None else now
    # ticks between this one and now were never sent (a jittered tick comes late on purpose)
    missed = 0 if queued else _missed_between(record, due_at, now - timedelta(seconds=jitter))
    settings = rt.settings
    if not queued:
        if not store.claim_tick(
            schedule_id, due_at.timestamp(), int(settings.schedule_stale_after * 2 + jitter)
        ):
            return FireResult(None)  # another beat sent this tick too: fired once already
        if (now - due_at).total_seconds() > settings.schedule_stale_after + jitter:
            return FireResult(MISSED, missed=missed)
    blocked = _blocked(rt, celery, store, record, due_at)
    if blocked is not None:
        return FireResult(blocked.outcome, missed=missed, retry_in=blocked.retry_in)
    if queued:
        store.drop_queued(schedule_id)
    envelope = _submit(rt, celery, record, due=due_at.timestamp(), trigger="schedule")
    lag = max(0.0, time.time() - due_at.timestamp())
    return FireResult(
        FIRED, missed=missed, lag=None if queued or jitter else lag, job_id=envelope["id"]
    )


def run_finished(rt: JobContext, envelope: dict[str, Any]) -> None:
    """The job of a schedule became final (the finalizer): its concurrency slot is free."""
    schedule_id = envelope.get("schedule_id")
    if schedule_id:
        schedule_store(rt).release(schedule_id, envelope["id"])


def list_runs(
    rt: JobContext, schedule_id: str, owner: str | None, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A schedule's runs, newest first, each with its job's status read now (null when the
    job has expired from the store)."""
    load_schedule(rt, schedule_id, owner)
    runs, nxt = schedule_store(rt).runs(schedule_id, limit=limit, cursor=cursor)
    out = []
    for run in runs:
        due = run.get("due_at")
        out.append(
            {
                "job_id": run["job_id"],
                "trigger": run["trigger"],
                "due_at": _iso(datetime.fromtimestamp(due, UTC)) if due is not None else None,
                "fired_at": _iso(datetime.fromtimestamp(run["fired_at"], UTC)),
                "status": rt.store.status(run["job_id"]),
            }
        )
    return out, nxt
