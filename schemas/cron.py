"""The syntax of a schedule's trigger: cron expressions (Celery's parser) and IANA zones.

Here, in the lowest layer, so the request schema and the scheduler judge an expression
with the same code (app/schedules/trigger.py computes the fire times).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import ParseException, crontab_parser

__all__ = ["CRON_PATTERN", "DAYS", "Cron", "parse_cron", "zone"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _field(value: str) -> str:
    # what Celery's parser takes: `*` or `*/step`, a value, a range `a-b` or `a-b/step`
    step = r"(/[1-9][0-9]?)?"
    atom = rf"(\*{step}|{value}(-{value}{step})?)"
    return rf"{atom}(,{atom})*"


# The documented form of a cron expression (single spaces, lower-case day names); every
# string it matches is one Celery's parser takes (checked by a property test).
CRON_PATTERN = (
    "^"
    + " ".join(
        _field(v)
        for v in (
            r"[1-5]?[0-9]",
            r"(1?[0-9]|2[0-3])",
            r"([1-9]|[12][0-9]|3[01])",
            r"([1-9]|1[0-2])",
            r"([0-6]|sun|mon|tue|wed|thu|fri|sat)",
        )
    )
    + "$"
)


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression: the sets of values each field allows."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday, as cron and Celery count

    def matches_day(self, day: date) -> bool:
        return (
            day.month in self.months
            and day.day in self.days_of_month
            and (day.isoweekday() % 7) in self.days_of_week
        )


def parse_cron(expr: str) -> Cron:
    """Parse ``m h dom mon dow``; ValueError naming the bad field."""
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(
            "a cron expression has 5 fields: minute hour day-of-month month day-of-week"
        )
    names = ("minute", "hour", "day of month", "month", "day of week")
    bounds = ((60, 0), (24, 0), (31, 1), (12, 1), (7, 0))
    sets: list[frozenset[int]] = []
    for name, text, (size, low) in zip(names, parts, bounds, strict=True):
        try:
            values = crontab_parser(size, low).parse(text)
        except (ParseException, ValueError, KeyError) as exc:
            raise ValueError(f"invalid {name} field {text!r}: {exc}") from exc
        if name == "day of week":
            values = {v % 7 for v in values}  # 7 is Sunday too
        if not values:
            raise ValueError(f"the {name} field {text!r} matches nothing")
        sets.append(frozenset(values))
    return Cron(*sets)
