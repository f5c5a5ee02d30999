"""The redbeat side of a schedule: its entry (the trigger beat evaluates), saved and deleted
at runtime by the API, read by the one active `collectq beat`.

redbeat's JSON encoding knows intervals and crontabs but drops a crontab's time zone, so
an entry here encodes our `CronSchedule` (expression + IANA zone) itself; everything else
is redbeat's own format (`redbeat:{name}` hash + the `::schedule` zset, under our prefix).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.schedules import schedule as every
from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder
from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf, get_redis

from app.jobs.names import MAINTENANCE_QUEUE, SCHEDULE_FIRE_TASK
from app.schedules.trigger import CronSchedule

__all__ = ["Entry", "delete_entry", "entry_due_at", "save_entry", "trigger_schedule"]

_CRON = "tzcron"


class _Encoder(RedBeatJSONEncoder):  # type: ignore[misc]
    def default(self, obj: Any) -> Any:
        if isinstance(obj, CronSchedule):
            return {"__type__": _CRON, "expr": obj.expr, "tz": obj.tz_name}
        return super().default(obj)


class _Decoder(RedBeatJSONDecoder):  # type: ignore[misc]
    def dict_to_object(self, d: dict[str, Any]) -> Any:
        if d.get("__type__") == _CRON:
            return CronSchedule(d["expr"], d["tz"])
        return super().dict_to_object(d)


class Entry(RedBeatSchedulerEntry):  # type: ignore[misc]
    """redbeat's entry, with a tz-aware cron, and a due time that is the real one."""

    @staticmethod
    def decode_definition(definition: str) -> Any:
        return json.loads(definition, cls=_Decoder)

    @property
    def scheduled_at(self) -> datetime | None:
        """When the next tick is due (in the past when overdue); None if never again.

        redbeat's `due_at` adds the remaining time to `last_run_at`, which is right only
        just after a run; Celery schedules give the remaining time from now.
        """
        last = self.last_run_at
        if last is None:
            return self._default_now()  # type: ignore[no-any-return]
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        if isinstance(self.schedule, CronSchedule):
            return self.schedule.next_after(last)
        run_every = getattr(self.schedule, "run_every", None)
        if isinstance(run_every, timedelta):  # an interval: exact, not "now + remaining"
            return last + run_every  # type: ignore[no-any-return]
        delta = self.schedule.remaining_estimate(last)
        return None if delta is None else self._default_now() + delta

    @property
    def due_at(self) -> datetime | None:
        due = self.scheduled_at
        return None if due is None else max(due, self._default_now())

    def save(self) -> Entry:
        # redbeat's save with our encoder (its own is fixed in the method)
        definition = {
            "name": self.name,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "schedule": self.schedule,
            "enabled": self.enabled,
        }
        meta = {"last_run_at": self.last_run_at}
        with get_redis(self.app).pipeline() as pipe:
            pipe.hset(self.key, "definition", json.dumps(definition, cls=_Encoder))
            pipe.hsetnx(self.key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
            pipe.zadd(self.app.redbeat_conf.schedule_key, {self.key: self.score})
            pipe.execute()
        return self


def trigger_schedule(trigger: dict[str, Any]) -> Any:
    """The Celery schedule of a trigger record (`{"cron", "timezone"}` or `{"interval"}`)."""
    if trigger.get("cron"):
        return CronSchedule(trigger["cron"], trigger.get("timezone") or "UTC")
    return every(float(trigger["interval"]))


def save_entry(
    celery: Celery, schedule_id: str, trigger: dict[str, Any], jitter: float, last_run_at: datetime
) -> None:
    """(Re)write the beat entry of a schedule; its next tick follows `last_run_at`."""
    delete_entry(celery, schedule_id)  # a new trigger starts afresh (save keeps old meta)
    Entry(
        name=schedule_id,
        task=SCHEDULE_FIRE_TASK,
        schedule=trigger_schedule(trigger),
        kwargs={"schedule_id": schedule_id, "jitter": jitter},
        options={"queue": MAINTENANCE_QUEUE},
        last_run_at=last_run_at,
        app=celery,
    ).save()


def delete_entry(celery: Celery, schedule_id: str) -> None:
    Entry(name=schedule_id, app=celery).delete()


def entry_due_at(celery: Celery, schedule_id: str) -> datetime | None:
    """The next due time beat holds for a schedule (None: no entry or never again)."""
    ensure_conf(celery)  # generate_key reads it; only an Entry made in this process sets it
    try:
        entry = Entry.from_key(Entry.generate_key(celery, schedule_id), app=celery)
    except KeyError:
        return None
    return entry.scheduled_at  # type: ignore[no-any-return]
