"""Schedules: a job template, a trigger (cron in an IANA zone, or an interval), when it may
fire, and the runs it made."""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from schemas import FullMatch
from schemas.changes import ChangeDetectionSchema
from schemas.cron import CRON_PATTERN, DAYS, parse_cron, zone
from schemas.job import JobRequestSchema
from schemas.webhooks import callback_artifacts_field, callback_on_field, callback_url_field

__all__ = [
    "DAYS",
    "RunListArgsSchema",
    "RunListSchema",
    "ScheduleListArgsSchema",
    "ScheduleListSchema",
    "ScheduleRequestSchema",
    "ScheduleSchema",
    "ScheduleUpdateSchema",
    "zone_names",
]

MAX_CRON = 200
MIN_INTERVAL = 0.5  # the schema's floor; the server's is SCHEDULE_MIN_INTERVAL
MAX_INTERVAL = 366 * 86400
MAX_JITTER = 86400
MAX_CONCURRENT = 100
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _cron(value: str) -> None:
    try:
        parse_cron(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def _zone(value: str) -> None:
    if value not in zone_names():
        raise ValidationError(f"not an IANA time zone (e.g. Europe/Berlin): {value!r}")
    try:
        zone(value)
    except ValueError as exc:
        raise ValidationError(f"not an IANA time zone (e.g. Europe/Berlin): {value!r}") from exc


@functools.cache
def zone_names() -> frozenset[str]:
    """The IANA zones this machine knows (the document's enum of `timezone`)."""
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _copy(name: str) -> Any:
    """A field of the job request, as it is (one definition of what a job is)."""
    return JobRequestSchema._declared_fields[name]


class JobTemplateSchema(_Strict):
    """What each run submits: a job request without callback (the schedule has its own)."""

    target = _copy("target")
    collectors = _copy("collectors")
    options = _copy("options")
    labels = _copy("labels")

    @validates_schema
    def _unique(self, data: dict[str, Any], **_: Any) -> None:
        names = data.get("collectors") or []
        if len(set(names)) != len(names):
            raise ValidationError("collectors must not repeat", "collectors")


class TriggerSchema(_Strict):
    cron = fields.String(
        validate=[
            validate.Length(min=1, max=MAX_CRON),
            FullMatch(
                CRON_PATTERN,
                error="not a cron expression: 5 fields (minute hour day-of-month month "
                "day-of-week) of *, */n, a, a-b, a-b/n or lists of them, one space apart",
            ),
            _cron,
        ],
        metadata={
            "description": "`minute hour day-of-month month day-of-week` in `timezone`",
            "example": "30 2 * * *",
        },
    )
    interval = fields.Float(
        validate=validate.Range(min=MIN_INTERVAL, max=MAX_INTERVAL),
        metadata={"description": "seconds (at least the server's SCHEDULE_MIN_INTERVAL)"},
    )

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if ("cron" in data) == ("interval" in data):
            raise ValidationError("give exactly one of cron, interval", "cron")


class WindowSchema(_Strict):
    days = fields.List(
        fields.String(validate=validate.OneOf(DAYS)),
        validate=validate.Length(min=1, max=7),
        load_default=lambda: list(DAYS),
    )
    start = fields.String(
        load_default="00:00",
        validate=validate.Regexp(_HHMM, error="use HH:MM (24 h)"),
        metadata={"example": "08:00"},
    )
    end = fields.String(
        load_default="00:00",
        validate=validate.Regexp(_HHMM, error="use HH:MM (24 h)"),
        metadata={"description": "exclusive; before `start`: spans midnight; equal: all day"},
    )


class CallbackRequestSchema(_Strict):
    url = callback_url_field(required=True)
    on = callback_on_field(load_default=lambda: ["always"])
    artifacts = callback_artifacts_field()


class ScheduleRequestSchema(_Strict):
    name = fields.String(validate=validate.Length(max=100), load_default=None, allow_none=True)
    job = fields.Nested(JobTemplateSchema, required=True)
    trigger = fields.Nested(TriggerSchema, required=True)
    timezone = fields.String(
        load_default="UTC",
        validate=[validate.Length(max=64), _zone],
        metadata={"description": "IANA zone of `cron` and `window`", "example": "Europe/Berlin"},
    )
    jitter = fields.Float(
        load_default=0.0,
        validate=validate.Range(min=0, max=MAX_JITTER),
        metadata={"description": "seconds: each run starts up to this much later, at random"},
    )
    window = fields.Nested(WindowSchema, load_default=None, allow_none=True)
    start_at = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "no tick fires before (with an offset, e.g. `…Z`)"},
    )
    end_at = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "no tick fires after (at or before start_at: it never fires)"},
    )
    max_concurrent = fields.Integer(
        load_default=1, validate=validate.Range(min=1, max=MAX_CONCURRENT)
    )
    concurrency_policy = fields.String(
        load_default="skip",
        validate=validate.OneOf(("skip", "queue")),
        metadata={
            "description": "a tick while `max_concurrent` runs go on: `skip` it, or `queue` "
            "it (one tick waits for a free slot; more are skipped)"
        },
    )
    callback = fields.Nested(CallbackRequestSchema, load_default=None, allow_none=True)
    change_detection = fields.Nested(
        ChangeDetectionSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "how runs are compared (README 'Change detection')"},
    )
    paused = fields.Boolean(load_default=False)

    @post_load
    def _iso(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        for key in ("start_at", "end_at"):
            if data.get(key) is not None:
                data[key] = data[key].isoformat()
        return data


class ScheduleUpdateSchema(ScheduleRequestSchema):
    """PATCH: any subset of the fields; the result is checked as a whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["partial"] = True
        super().__init__(*args, **kwargs)


class ScheduleSchema(Schema):
    id = fields.String(required=True, metadata={"example": "s_01JD…"})
    name = fields.String(allow_none=True)
    job = fields.Nested(JobTemplateSchema)
    trigger = fields.Nested(TriggerSchema)
    timezone = fields.String()
    jitter = fields.Float()
    window = fields.Nested(WindowSchema, allow_none=True)
    start_at = fields.String(allow_none=True)
    end_at = fields.String(allow_none=True)
    max_concurrent = fields.Integer()
    concurrency_policy = fields.String()
    callback = fields.Nested(CallbackRequestSchema, allow_none=True)
    change_detection = fields.Nested(ChangeDetectionSchema, allow_none=True)
    paused = fields.Boolean()
    next_fire_at = fields.String(
        allow_none=True,
        metadata={
            "description": "the next tick that fires (null: paused or ended); jitter not included"
        },
    )
    created_at = fields.String()
    updated_at = fields.String()


class ScheduleListSchema(Schema):
    items = fields.List(fields.Nested(ScheduleSchema), required=True)
    next_cursor = fields.String(allow_none=True)


class ScheduleListArgsSchema(_Strict):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=128))


class RunListArgsSchema(_Strict):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(
        validate=FullMatch(r"^[0-9]{1,16}$", error="not a cursor of this list"),
        metadata={"description": "`next_cursor` of the previous page"},
    )


class RunSchema(Schema):
    job_id = fields.String(required=True)
    trigger = fields.String(metadata={"description": "`schedule` (a tick) or `manual` (run now)"})
    due_at = fields.String(allow_none=True, metadata={"description": "the tick's due time"})
    fired_at = fields.String(metadata={"description": "when its job was submitted"})
    status = fields.String(
        allow_none=True,
        metadata={"description": "the job's status now (null: the job expired from the store)"},
    )


class RunListSchema(Schema):
    items = fields.List(fields.Nested(RunSchema), required=True)
    next_cursor = fields.String(allow_none=True)
