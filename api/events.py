"""Server-sent events: GET /v1/jobs/{id}/events (one job) and GET /v1/events (all of yours).

Both are ``text/event-stream``; each event's ``id`` is its stream id, so a client (an
EventSource reconnects by itself) resumes exactly after ``Last-Event-ID``. Owner-scoped like
GET /v1/jobs/{id}: another owner's job is a 404; an admin's /v1/events carries every job.
A stream holds one of the client's wait slots (`MAX_WAITS_PER_CLIENT`, shared with
`?wait=`) and, under gunicorn's gevent worker, a greenlet, not a request thread.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from flask import Response, request

from api.identity import owner_filter, requires
from api.jobs import _job_id as job_id_or_404  # the same id check (404 for a malformed id)
from api.ratelimit import client_key
from api.requests import Blueprint
from app.events.hub import hub_for
from app.events.sse import SseBody, history, valid_event_id
from app.jobs import service
from app.metrics import EVENT_STREAMS
from app.runtime import Runtime, runtime

__all__ = ["blp"]

blp = Blueprint("events", __name__, url_prefix="/v1", description="Live events (SSE)")

_SSE = {
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
    "description": (
        "An event stream: `event: state` (data: job_id, collector, status, attempt, at) per "
        "collector state change, `event: done` (data: job_id, status, at) when a job is "
        "final, `: keep-alive` comments; `id` = the stream id for `Last-Event-ID`"
    ),
}
_LAST_EVENT_ID = {
    "in": "header",
    "name": "Last-Event-ID",
    "required": False,
    "schema": {"type": "string"},
    "description": "resume after this event id (an EventSource sends it when it reconnects)",
}


def _stream(rt: Runtime, key: str, *, job_id: str | None, owner: str | None) -> Response:
    """Subscribe, read the history after Last-Event-ID, then hand the rest to the body."""
    after = valid_event_id(request.headers.get("Last-Event-ID"))
    settings = rt.settings
    resources = ExitStack()
    try:
        resources.enter_context(service.wait_slot(rt, client_key(), settings.event_stream_max))
        hub = hub_for(settings.redis_url, rt.store.keys.all_events)
        sub = resources.enter_context(hub.subscribe(job_id=job_id, owner=owner))
        # a job's stream starts with its whole history; /v1/events with what is new
        past = history(rt.redis, key, after) if (after or job_id) else []
        EVENT_STREAMS.inc()
        resources.callback(EVENT_STREAMS.dec)
    except BaseException:
        resources.close()
        raise
    body = SseBody(
        sub,
        past,
        resources,
        keepalive=settings.event_keepalive,
        max_life=settings.event_stream_max,
        job_id=job_id,
        final_status=(
            (lambda: s if rt.store.is_terminal(s := rt.store.status(job_id)) else None)
            if job_id
            else None
        ),
    )
    resp = Response(body, mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"  # a buffering proxy (nginx) passes it on at once
    return resp


@blp.route("/jobs/<job_id>/events")
@requires("jobs:read", "read")
@blp.doc(parameters=[_LAST_EVENT_ID], responses={"200": _SSE})
@blp.alt_response(404, description="No such job")
@blp.alt_response(429, description="Too many waiting requests of this client")
def job_events(job_id: str) -> Any:
    """A job's events: its history, then live, then `done` (the stream ends)."""
    rt = runtime()
    service.get_job(rt, job_id_or_404(job_id), owner_filter())
    return _stream(rt, rt.store.keys.events(job_id), job_id=job_id, owner=None)


@blp.route("/events")
@requires("jobs:read", "read")
@blp.doc(parameters=[_LAST_EVENT_ID], responses={"200": _SSE})
@blp.alt_response(429, description="Too many waiting requests of this client")
def events() -> Any:
    """Events of all your jobs (an admin: of every job), from now or after Last-Event-ID."""
    rt = runtime()
    owner = owner_filter()
    keys = rt.store.keys
    key = keys.all_events if owner is None else keys.owner_events(owner)
    return _stream(rt, key, job_id=None, owner=owner)
