"""/v1/schedules/{id}/changes: what change detection found between a schedule's runs."""

from __future__ import annotations

from typing import Any

from api.identity import owner_filter, requires
from api.requests import Blueprint
from app.changes import change_log
from app.runtime import runtime
from app.schedules.service import load_schedule
from schemas.changes import ChangeListArgsSchema, ChangeListSchema

__all__ = ["blp"]

blp = Blueprint(
    "changes", __name__, url_prefix="/v1/schedules", description="Changes between schedule runs"
)


@blp.route("/<schedule_id>/changes")
@requires("schedules:read", "read")
@blp.arguments(ChangeListArgsSchema, location="query")
@blp.response(200, ChangeListSchema)
@blp.alt_response(404, description="No such schedule")
def changes(args: dict[str, Any], schedule_id: str) -> Any:
    """Changes found between the schedule's runs, newest first (cursor pagination)."""
    rt = runtime()
    load_schedule(rt, schedule_id, owner_filter())  # another owner's schedule: 404
    items, cursor = change_log(rt).list(schedule_id, limit=args["limit"], cursor=args.get("cursor"))
    return {"items": items, "next_cursor": cursor}
