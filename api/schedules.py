"""/v1/schedules: scheduled collections (create, list, get, update, delete, pause, resume,
run now) and their runs."""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Api

from api.identity import current_owner, owner_filter, requires
from api.jobs import render
from api.requests import Blueprint, request_id
from app.errors import NotFound, ValidationFailed
from app.jobs.callback import check_callback_url
from app.runtime import runtime
from app.schedules import service
from app.settings import Settings
from schemas.job import EnvelopeSchema
from schemas.schedules import (
    RunListArgsSchema,
    RunListSchema,
    ScheduleListArgsSchema,
    ScheduleListSchema,
    ScheduleRequestSchema,
    ScheduleSchema,
    ScheduleUpdateSchema,
    zone_names,
)

__all__ = ["blp", "document_schedules"]

blp = Blueprint(
    "schedules", __name__, url_prefix="/v1/schedules", description="Scheduled collections"
)

_SCHEDULE_ID = re.compile(r"^s_[0-9A-HJKMNP-TV-Z]{26}$")


def document_schedules(api: Api, settings: Settings) -> None:
    """Make the document say what this server accepts (after `document_collectors`): the
    job template as a job request's fields, exactly one of cron/interval, the interval and
    jitter bounds of the settings, the time zones of zoneinfo."""
    schemas = api.spec.components.schemas
    request, template = schemas.get("JobRequest"), schemas.get("JobTemplate")
    if request is not None and template is not None:
        for name in template["properties"]:
            template["properties"][name] = copy.deepcopy(request["properties"][name])
    trigger = schemas.get("Trigger")
    if trigger is not None:
        trigger["oneOf"] = [{"required": ["cron"]}, {"required": ["interval"]}]
        trigger["properties"]["interval"]["minimum"] = settings.schedule_min_interval
    for name in ("ScheduleRequest", "ScheduleUpdate"):
        props = schemas.get(name, {}).get("properties", {})
        if "jitter" in props:
            props["jitter"]["maximum"] = min(
                props["jitter"]["maximum"], settings.schedule_max_jitter
            )
        if "timezone" in props:
            props["timezone"]["enum"] = sorted(zone_names())


def _id(schedule_id: str) -> str:
    if not _SCHEDULE_ID.match(schedule_id):
        raise NotFound(f"no schedule {schedule_id}")
    return schedule_id


def _celery() -> Any:
    return current_app.extensions["celery"]


def _check_callback(data: dict[str, Any]) -> None:
    callback = data.get("callback")
    if callback:
        try:
            check_callback_url(callback["url"], runtime().policy, field="url")
        except ValidationFailed as exc:
            raise ValidationFailed({"callback": exc.errors}) from exc


@blp.route("")
class Schedules(MethodView):
    @requires("schedules:write", "submit")
    @blp.arguments(ScheduleRequestSchema)
    @blp.response(201, ScheduleSchema, description="Created; `next_fire_at` says when")
    @blp.alt_response(422, description="Invalid fields")
    def post(self, data: dict[str, Any]) -> Any:
        """Create a schedule: a job template and a trigger (cron in a time zone, or an interval)."""
        _check_callback(data)
        record = service.create_schedule(runtime(), _celery(), data, owner=current_owner())
        return record, 201, {"Location": f"/v1/schedules/{record['id']}"}

    @requires("schedules:read", "read")
    @blp.arguments(ScheduleListArgsSchema, location="query")
    @blp.response(200, ScheduleListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List schedules, newest first (cursor pagination)."""
        items, cursor = service.list_schedules(
            runtime(), _celery(), owner_filter(), limit=args["limit"], cursor=args.get("cursor")
        )
        return {"items": items, "next_cursor": cursor}


@blp.route("/<schedule_id>")
class Schedule(MethodView):
    @requires("schedules:read", "read")
    @blp.response(200, ScheduleSchema)
    @blp.alt_response(404, description="No such schedule")
    def get(self, schedule_id: str) -> Any:
        """A schedule, with its next fire time."""
        return service.get_schedule(runtime(), _celery(), _id(schedule_id), owner_filter())

    @requires("schedules:write", "submit")
    @blp.arguments(ScheduleUpdateSchema)
    @blp.response(200, ScheduleSchema)
    @blp.alt_response(404, description="No such schedule")
    @blp.alt_response(422, description="Invalid fields")
    def patch(self, changes: dict[str, Any], schedule_id: str) -> Any:
        """Change some fields; a new trigger starts counting from now."""
        _check_callback(changes)
        return service.update_schedule(
            runtime(),
            _celery(),
            _id(schedule_id),
            owner_filter(),
            changes,
            validate=_validate_whole,
        )

    @requires("schedules:write", "submit")
    @blp.response(204)
    @blp.alt_response(404, description="No such schedule")
    def delete(self, schedule_id: str) -> None:
        """Delete a schedule (its jobs stay)."""
        service.delete_schedule(runtime(), _celery(), _id(schedule_id), owner_filter())


def _validate_whole(definition: dict[str, Any]) -> dict[str, Any]:
    """The schedule after a PATCH, checked as a whole (e.g. end_at after start_at)."""
    from marshmallow import ValidationError

    try:
        loaded: dict[str, Any] = ScheduleRequestSchema().load(definition)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages_dict) from exc
    return loaded


@blp.route("/<schedule_id>/pause", methods=["POST"])
@requires("schedules:write", "submit")
@blp.response(200, ScheduleSchema)
@blp.alt_response(404, description="No such schedule")
def pause(schedule_id: str) -> Any:
    """Pause: no tick fires until resumed."""
    return service.set_paused(runtime(), _celery(), _id(schedule_id), owner_filter(), True)


@blp.route("/<schedule_id>/resume", methods=["POST"])
@requires("schedules:write", "submit")
@blp.response(200, ScheduleSchema)
@blp.alt_response(404, description="No such schedule")
def resume(schedule_id: str) -> Any:
    """Resume: ticks count again from now."""
    return service.set_paused(runtime(), _celery(), _id(schedule_id), owner_filter(), False)


@blp.route("/<schedule_id>/run", methods=["POST"])
@requires("schedules:write", "submit")
@blp.response(202, EnvelopeSchema, description="The job it submitted; poll its Location")
@blp.alt_response(404, description="No such schedule")
@blp.alt_response(503, description="Broker or Redis unreachable; retry after Retry-After")
def run(schedule_id: str) -> Any:
    """Run now: submit the schedule's job at once (pause, window and slots do not apply)."""
    envelope = service.run_now(
        runtime(), _celery(), _id(schedule_id), owner_filter(), request_id=request_id()
    )
    return render(envelope), 202, {"Location": f"/v1/jobs/{envelope['id']}"}


@blp.route("/<schedule_id>/runs")
@requires("schedules:read", "read")
@blp.arguments(RunListArgsSchema, location="query")
@blp.response(200, RunListSchema)
@blp.alt_response(404, description="No such schedule")
def runs(args: dict[str, Any], schedule_id: str) -> Any:
    """The jobs a schedule created, newest first, with their status now."""
    items, cursor = service.list_runs(
        runtime(), _id(schedule_id), owner_filter(), limit=args["limit"], cursor=args.get("cursor")
    )
    return {"items": items, "next_cursor": cursor}
