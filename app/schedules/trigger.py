"""When a schedule is due: cron expressions in an IANA time zone, intervals, active windows.

Cron fields are parsed by Celery's own `crontab_parser` (the syntax Celery users know:
``m h dom mon dow``, ranges, steps, names); the next fire time is found here, in wall-clock
time of the schedule's zone, so a daily 02:30 stays at 02:30 local across DST changes.
DST rules (docs/decisions.md, "Scheduling: cron and time zones"):

- a wall time that does not exist (spring forward) fires one hour later, as the clock
  reads it (02:30 → 03:30 CEST): `fold=0` of zoneinfo;
- a wall time that happens twice (fall back) fires once, at its first occurrence.

Day of month and day of week must both match when both are restricted (Celery's rule,
not vixie cron's "either").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import BaseSchedule, schedstate

from schemas.cron import DAYS, Cron, parse_cron, zone

__all__ = [
    "DAYS",
    "Cron",
    "CronSchedule",
    "Window",
    "next_cron",
    "parse_cron",
    "zone",
]

# How far ahead a next fire time is searched (a `30 2 29 2 *` fires every four years).
SEARCH_DAYS = 366 * 8


def _local(naive: datetime, tz: ZoneInfo) -> datetime:
    return naive.replace(tzinfo=tz, fold=0)


def next_cron(cron: Cron, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (aware), in UTC; None if none within reach."""
    after_utc = after.astimezone(UTC)
    start = after_utc.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    hours, minutes = sorted(cron.hours), sorted(cron.minutes)
    # one day back: a wall time of the repeated hour may map before `start`'s wall time
    day = start.date() - timedelta(days=1)
    for _ in range(SEARCH_DAYS):
        if cron.matches_day(day):
            for h in hours:
                for m in minutes:
                    fire = _local(datetime.combine(day, time(h, m)), tz).astimezone(UTC)
                    if fire > after_utc:
                        return fire
        day += timedelta(days=1)
    return None


class CronSchedule(BaseSchedule):
    """A Celery schedule for redbeat: a cron expression evaluated in its own time zone."""

    def __init__(self, expr: str, tz: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expr, self.tz_name = expr, tz
        self.cron, self.zone = parse_cron(expr), zone(tz)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def next_after(self, last_run_at: datetime) -> datetime | None:
        if last_run_at.tzinfo is None:
            last_run_at = last_run_at.replace(tzinfo=UTC)
        return next_cron(self.cron, self.zone, last_run_at)

    def remaining_estimate(self, last_run_at: datetime) -> timedelta | None:  # type: ignore[override]
        nxt = self.next_after(last_run_at)
        return None if nxt is None else nxt - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        nxt = self.next_after(last_run_at)
        if nxt is None:
            return schedstate(is_due=False, next=3600.0)
        now = self.now()
        if nxt <= now:
            following = next_cron(self.cron, self.zone, now)
            wait = (following - now).total_seconds() if following else 3600.0
            return schedstate(is_due=True, next=wait)
        return schedstate(is_due=False, next=(nxt - now).total_seconds())

    def __repr__(self) -> str:
        return f"<cron {self.expr!r} {self.tz_name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronSchedule) and (self.expr, self.tz_name) == (
            other.expr,
            other.tz_name,
        )

    def __hash__(self) -> int:
        return hash((self.expr, self.tz_name))

    def __reduce__(self) -> Any:
        return (self.__class__, (self.expr, self.tz_name))


@dataclass(frozen=True)
class Window:
    """Days and a daily time range (local to the schedule's zone) when ticks may fire.

    `end` before `start` spans midnight (22:00–06:00); the day is the one the range starts on.
    """

    days: frozenset[int]  # 0 = Monday … 6 = Sunday (`DAYS`)
    start: time
    end: time

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> Window | None:
        if not data:
            return None
        days = data.get("days") or list(DAYS)
        return cls(
            frozenset(DAYS.index(d) for d in days),
            time.fromisoformat(data.get("start") or "00:00"),
            time.fromisoformat(data.get("end") or "00:00"),
        )

    def contains(self, when: datetime, tz: ZoneInfo) -> bool:
        local = when.astimezone(tz)
        t, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= t < self.end
        if self.start == self.end:  # the whole day
            return day in self.days
        if t >= self.start:
            return day in self.days
        return t < self.end and (day - 1) % 7 in self.days
