"""/v1/jobs: submit, list, get (long-poll), cancel, artifacts."""

from __future__ import annotations

import base64
import logging
import re
from typing import Any

from flask import Response, current_app, request, url_for
from flask.views import MethodView
from redis.exceptions import RedisError

from api.identity import current_owner, owner_filter, requires
from api.ratelimit import client_key
from api.requests import Blueprint, request_id
from app.errors import NotFound, QuotaExceeded, ValidationFailed
from app.jobs import service
from app.jobs.reuse import SUCCEEDED
from app.jobs.store import ListFilter
from app.runtime import runtime
from schemas.job import (
    EnvelopeSchema,
    JobListArgsSchema,
    JobListSchema,
    JobRequestSchema,
    WaitArgsSchema,
)

__all__ = ["REUSED_HEADER", "answer_of", "blp", "render", "submit"]

log = logging.getLogger("collectq.api")

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Collection jobs")

_JOB_ID = re.compile(r"^j_[0-9A-HJKMNP-TV-Z]{26}$")
MAX_IDEMPOTENCY_KEY = 256
# On a job answered instead of a new one (in flight, or `max_age`): `succeeded` or `in-flight`.
REUSED_HEADER = "Collectq-Reused"
_ARTIFACT = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def render(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope as a client sees it: each kept artifact gets the URL it is served at.

    URLs are the API's (its routes, its mount point behind a gateway), so they are
    computed here, never stored with the job.
    """
    for result in envelope["results"].values():
        for art in result.get("artifacts") or ():
            if "dropped" not in art:
                art["url"] = url_for("jobs.artifact", job_id=envelope["id"], name=art["name"])
    return envelope


def _job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise NotFound(f"no job {job_id}")
    return job_id


def submit(data: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Shared by POST /v1/jobs and the legacy POST /collect."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ValidationFailed(
            {"Idempotency-Key": [f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters"]}
        )
    done = service.submit_request(
        runtime(),
        current_app.extensions["celery"],
        data,
        owner=current_owner(),
        idempotency_key=key or None,
        request_id=request_id(),
    )
    return render(done.envelope), *answer_of(done)


def _wait_after_submit(accepted: dict[str, Any], wait: float) -> tuple[dict[str, Any], int]:
    """Wait as `GET ?wait=` does for a job just accepted (docs/decisions.md, "Performance:
    submit and wait in one request"). The job is in the broker already, so nothing after
    this point may turn the answer into an error a client would retry: with no wait slot
    free (429) or Redis gone (503), the answer is the 202 it would have had."""
    rt = runtime()
    try:
        envelope = service.wait_job(rt, accepted["id"], owner_filter(), wait, client=client_key())
    except QuotaExceeded:
        return accepted, 202
    except RedisError:
        log.warning(
            "wait after submit broke off: Redis unreachable", extra={"job_id": accepted["id"]}
        )
        return accepted, 202
    return render(envelope), (200 if rt.store.is_terminal(envelope["status"]) else 202)


def answer_of(done: service.Submitted) -> tuple[int, dict[str, str]]:
    """Status and headers of a submit: 202 (accepted, poll the Location), 200 for a job
    reused because it succeeded recently (its result is final)."""
    headers = {"Location": f"/v1/jobs/{done.envelope['id']}"}
    if done.reused:
        headers[REUSED_HEADER] = done.reused
    elif not done.created:
        headers["Idempotent-Replayed"] = "true"
    return (200 if done.reused == SUCCEEDED else 202), headers


@blp.route("")
class Jobs(MethodView):
    @requires("jobs:write", "submit")
    @blp.arguments(JobRequestSchema)
    @blp.arguments(WaitArgsSchema, location="query")
    @blp.response(202, EnvelopeSchema, description="Accepted; poll the Location")
    @blp.alt_response(
        200,
        schema=EnvelopeSchema,
        description="`max_age`: an identical job that succeeded recently, reused "
        "(`Collectq-Reused: succeeded`); or, with `?wait=N`, the job ended within N s",
    )
    @blp.alt_response(
        422,
        description="Invalid fields; or the Idempotency-Key was used with another body "
        "(type `idempotency_key_reused`, `errors` names `Idempotency-Key`)",
    )
    @blp.alt_response(503, description="Broker or Redis unreachable; retry after Retry-After")
    def post(self, data: dict[str, Any], args: dict[str, Any]) -> Any:
        """Submit a job: one target, one or more collectors.

        `?wait=N` holds the answer up to N s (capped by the server) for the job to end:
        200 with its final envelope, else 202 as without it.
        """
        envelope, status, headers = submit(data)
        if args["wait"] > 0 and status == 202:
            envelope, status = _wait_after_submit(envelope, args["wait"])
        return envelope, status, headers

    @requires("jobs:read", "read")
    @blp.arguments(JobListArgsSchema, location="query")
    @blp.response(200, JobListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List jobs, newest first (cursor pagination)."""
        label = args.get("label")
        flt = ListFilter(
            status=args.get("status"),
            collector=args.get("collector"),
            label=tuple(label.split("=", 1)) if label else None,
        )
        # owner_filter() is None for an admin: ALL_OWNERS (never an owner name, never `or`)
        items, cursor = runtime().store.list(
            owner_filter(), flt, limit=args["limit"], cursor=args.get("cursor")
        )
        return {"items": [render(env) for env in items], "next_cursor": cursor}


@blp.route("/<job_id>")
class Job(MethodView):
    @requires("jobs:read", "read")
    @blp.arguments(WaitArgsSchema, location="query")
    @blp.response(200, EnvelopeSchema)
    @blp.alt_response(404, description="No such job")
    def get(self, args: dict[str, Any], job_id: str) -> Any:
        """The result envelope; `?wait=N` waits up to N s for a terminal state."""
        rt = runtime()
        if args["wait"] > 0:
            return render(
                service.wait_job(
                    rt, _job_id(job_id), owner_filter(), args["wait"], client=client_key()
                )
            )
        return render(service.get_job(rt, _job_id(job_id), owner_filter()))

    @requires("jobs:write", "submit")
    @blp.response(200, EnvelopeSchema)
    @blp.alt_response(409, description="The job already finished")
    def delete(self, job_id: str) -> Any:
        """Cancel: queued work is skipped, running work revoked."""
        return render(
            service.cancel_job(
                runtime(), current_app.extensions["celery"], _job_id(job_id), owner_filter()
            )
        )


@blp.route("/<job_id>/artifacts/<name>")
@requires("jobs:read", "read")
@blp.response(200, description="Raw bytes with their content type; `?inline=1` gives base64 JSON")
@blp.alt_response(404, description="No such job or artifact")
def artifact(job_id: str, name: str) -> Response:
    """An artifact (response body, screenshot) of a job."""
    rt = runtime()
    service.get_job(rt, _job_id(job_id), owner_filter())
    found = rt.store.artifacts.get(job_id, name) if _ARTIFACT.match(name) else None
    if found is None:
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    body, content_type = found
    if request.args.get("inline") in ("1", "true"):
        return current_app.json.response(  # type: ignore[return-value]
            name=name,
            content_type=content_type,
            size=len(body),
            data_base64=base64.b64encode(body).decode(),
        )
    resp = Response(body, mimetype=None, content_type=content_type)
    # Artifacts are the target's bytes: never let a browser sniff or render them as ours.
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
