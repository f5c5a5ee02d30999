"""Schedule triggers: cron in an IANA zone across DST changes, windows, the beat entry's
encoding (pure: no Redis)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import schedule as every

from app.schedules.entries import Entry, _Decoder, _Encoder
from app.schedules.trigger import CronSchedule, Window, next_cron, parse_cron, zone
from schemas.cron import CRON_PATTERN

BERLIN = ZoneInfo("Europe/Berlin")


def _fires(expr: str, tz: ZoneInfo, start: datetime, n: int) -> list[datetime]:
    cron, out, when = parse_cron(expr), [], start
    for _ in range(n):
        nxt = next_cron(cron, tz, when)
        assert nxt is not None
        out.append(nxt)
        when = nxt
    return out


def test_daily_0230_berlin_across_spring_forward() -> None:
    # 2026-03-29: 02:00 CET → 03:00 CEST, 02:30 does not exist that day
    fires = _fires("30 2 * * *", BERLIN, datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    assert [f.astimezone(BERLIN).isoformat() for f in fires] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",  # the skipped wall time fires one hour later
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    # still one fire per day, and 23 h / 24 h apart in real time
    assert [b - a for a, b in zip(fires, fires[1:], strict=False)] == [
        timedelta(hours=24),
        timedelta(hours=23),
        timedelta(hours=24),
    ]


def test_daily_0230_berlin_across_fall_back_fires_once() -> None:
    # 2026-10-25: 03:00 CEST → 02:00 CET, 02:30 happens twice: fired at the first only
    fires = _fires("30 2 * * *", BERLIN, datetime(2026, 10, 23, 12, tzinfo=UTC), 4)
    assert [f.isoformat() for f in fires] == [
        "2026-10-24T00:30:00+00:00",
        "2026-10-25T00:30:00+00:00",  # 02:30 CEST, the first 02:30
        "2026-10-26T01:30:00+00:00",  # 02:30 CET
        "2026-10-27T01:30:00+00:00",
    ]
    # asked from inside the repeated hour (02:10 CET, the second pass), the next is tomorrow
    second_pass = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    assert next_cron(parse_cron("30 2 * * *"), BERLIN, second_pass) == fires[2]


def test_cron_in_another_zone_and_weekdays() -> None:
    ny = ZoneInfo("America/New_York")
    # Mondays to Fridays 09:00 New York, from Saturday 2026-11-28
    fires = _fires("0 9 * * mon-fri", ny, datetime(2026, 11, 28, tzinfo=UTC), 2)
    assert [f.astimezone(ny).strftime("%a %H:%M") for f in fires] == ["Mon 09:00", "Tue 09:00"]
    assert fires[0] == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "word"),
    [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * * *", "5 fields"),
        ("x * * * *", "minute"),
    ],
)
def test_bad_cron_names_the_field(expr: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        parse_cron(expr)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        zone("Mars/Olympus")


def test_window_days_and_hours_and_midnight_span() -> None:
    office = Window.from_record(
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}
    )
    assert office is not None
    monday_9 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 Berlin
    assert office.contains(monday_9, BERLIN)
    assert not office.contains(monday_9 + timedelta(hours=10), BERLIN)  # 19:00
    assert not office.contains(monday_9 - timedelta(days=1), BERLIN)  # Sunday
    night = Window.from_record({"days": ["fri"], "start": "22:00", "end": "06:00"})
    assert night is not None
    friday_23 = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)  # 23:00 Berlin
    assert night.contains(friday_23, BERLIN)
    assert night.contains(friday_23 + timedelta(hours=6), BERLIN)  # Saturday 05:00
    assert not night.contains(friday_23 + timedelta(hours=8), BERLIN)  # Saturday 07:00


def test_cron_schedule_is_due_in_its_zone() -> None:
    sched = CronSchedule("30 2 * * *", "Europe/Berlin")
    last = datetime.now(UTC) - timedelta(days=2)
    assert sched.is_due(last).is_due
    just_now = datetime.now(UTC)
    state = sched.is_due(just_now)
    assert not state.is_due
    assert 0 < state.next <= 25 * 3600


def test_entry_encoding_keeps_the_zone() -> None:
    """redbeat's own encoder drops a crontab's zone; ours round-trips it."""
    text = json.dumps({"schedule": CronSchedule("30 2 * * *", "Europe/Berlin")}, cls=_Encoder)
    back = json.loads(text, cls=_Decoder)["schedule"]
    assert back == CronSchedule("30 2 * * *", "Europe/Berlin")
    assert isinstance(json.loads(json.dumps(every(5.0), cls=_Encoder), cls=_Decoder), every)


def test_entry_due_time_is_the_real_one() -> None:
    celery = Celery("t", set_as_current=False)
    celery.conf.update(redbeat_redis_url="redis://127.0.0.1:6379/0", redbeat_redis_options={})
    last = datetime.now(UTC) - timedelta(seconds=50)
    entry = Entry(name="s", task="t", schedule=every(20.0), last_run_at=last, app=celery)
    # overdue by 30 s: due at last + 20 s (redbeat's own due_at would say `now`)
    assert entry.scheduled_at is not None
    assert abs((entry.scheduled_at - (last + timedelta(seconds=20))).total_seconds()) < 0.5


# the values each field's part of CRON_PATTERN allows (schemas/cron.py)
FIELD_VALUES = [
    [str(v) for v in range(60)],
    [str(v) for v in range(24)],
    [str(v) for v in range(1, 32)],
    [str(v) for v in range(1, 13)],
    [str(v) for v in range(7)] + ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
]


@pytest.mark.parametrize("position", range(5))
def test_every_documented_cron_atom_is_one_the_parser_takes(position: int) -> None:
    """Every atom the document's pattern allows in a field (`*`, `*/n`, `a`, `a-b`,
    `a-b/n`; a list is atoms joined by commas) is one Celery's parser takes there."""
    values = FIELD_VALUES[position]
    atoms = ["*", *(f"*/{n}" for n in range(1, 100)), *values]
    atoms += [f"{a}-{b}{s}" for a in values for b in values for s in ("", "/1", "/7", "/99")]
    for atom in atoms:
        expr = " ".join(atom if i == position else "*" for i in range(5))
        assert re.fullmatch(CRON_PATTERN, expr), expr
        parse_cron(expr)
    assert not re.fullmatch(CRON_PATTERN, " ".join("7" if i == 4 else "*" for i in range(5)))


@pytest.mark.parametrize("expr", ["*/15 8-18 * * mon-fri", "0 0 1,15 * *", "30 2 * * *"])
def test_common_expressions_match_the_documented_pattern(expr: str) -> None:
    assert re.fullmatch(CRON_PATTERN, expr)
