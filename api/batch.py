"""POST /v1/jobs/batch: up to BATCH_MAX job requests, each accepted or rejected on its own.

Only a malformed envelope refuses the whole request: not an object, `jobs` missing, not a
list, empty or over BATCH_MAX (422 naming `jobs`), an Idempotency-Key header (422). Each
item is then answered by itself, in order, and the answer is 200 with one result per item
(index, status, job or problem): an item that POST /v1/jobs would refuse as invalid (its
fields, an unknown collector, bad options) is a 422 in its slot with `errors` naming its
fields; quota, reuse, a server bound (`max_age`), the callback's address or the broker may
refuse one item and not the others. A batch of N counts as N submits against the rate
limit (`api.ratelimit.counts_as`). docs/decisions.md, "Scheduling: idempotency, reuse and
batch (issue 13)".
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request

from api.errors import problem
from api.identity import current_owner, requires
from api.jobs import answer_of, render
from api.ratelimit import counts_as
from api.requests import Blueprint, request_id
from app.errors import CollectqError, DependencyUnavailable, ValidationFailed
from app.jobs import service
from app.runtime import Runtime, runtime
from schemas.batch import BATCH_LIMIT, BatchRequestSchema, BatchResponseSchema, InvalidItem

__all__ = ["blp"]

blp = Blueprint("batch", __name__, url_prefix="/v1/jobs", description="Collection jobs")


def _size() -> int:
    """Jobs in the raw body, for the rate limit (capped: a larger batch is a 422 anyway)."""
    try:  # get_data keeps the bytes for the parser that validates them later
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):  # refused later, with the reason
        return 1
    jobs = body.get("jobs") if isinstance(body, dict) else None
    return min(len(jobs), BATCH_LIMIT) if isinstance(jobs, list) else 1


@blp.after_request
def _allow(response: Response) -> Response:
    """OPTIONS /v1/jobs/batch allows POST only (werkzeug would add the GET and DELETE of
    /v1/jobs/<job_id>, whose rule matches the path too)."""
    if request.method == "OPTIONS" and request.endpoint == "batch.batch":
        response.headers["Allow"] = "OPTIONS, POST"
    return response


def _problem(exc: CollectqError) -> dict[str, Any]:
    body: dict[str, Any] = problem(
        exc.status, exc.title, exc.detail, exc.type, **exc.extra()
    ).get_json()
    return body


@blp.route("/batch", methods=["POST"])
@requires("jobs:write", "submit")
@counts_as(_size)
@blp.arguments(BatchRequestSchema)
@blp.response(
    200,
    BatchResponseSchema,
    description="One result per item, in order: accepted (`job`) or rejected (`problem`, "
    "also an invalid item: `422`, `errors` naming its fields)",
    example={
        "items": [
            {
                "index": 0,
                "status": 202,
                "job": {
                    "id": "j_01JD2X5K3V9W8Q7R6T5Y4U3I2O",
                    "schema_version": 1,
                    "status": "queued",
                    "target": "https://example.org",
                    "collectors": ["http"],
                    "created_at": "2026-11-30T06:30:00.000Z",
                    "started_at": None,
                    "finished_at": None,
                    "labels": {},
                    "schedule_id": None,
                    "results": {"http": {"status": "queued", "attempts": 0}},
                },
            },
            {
                "index": 1,
                "status": 429,
                "problem": {
                    "type": "https://collectq.dev/problems/quota_exceeded",
                    "title": "Too Many Requests",
                    "status": 429,
                    "detail": "1000 jobs are queued for this owner already; retry when some "
                    "have started",
                    "limit": 1000,
                },
            },
            {
                "index": 2,
                "status": 422,
                "problem": {
                    "type": "https://collectq.dev/problems/validation_error",
                    "title": "Unprocessable Content",
                    "status": 422,
                    "detail": "the request has invalid fields",
                    "instance": "/v1/jobs/batch",
                    "errors": {"collectors": ["Missing data for required field."]},
                },
            },
        ],
        "accepted": 1,
        "rejected": 2,
    },
)
@blp.alt_response(
    422,
    description="Nothing submitted, the envelope is refused: `jobs` missing, not a list, empty "
    "or over `BATCH_MAX`, or an `Idempotency-Key` header (an invalid item is answered in "
    "its slot of the 200)",
)
def batch(data: dict[str, Any]) -> Any:
    """Submit several jobs; each item is accepted or rejected on its own.

    The answer is 200 whenever the envelope is well-formed, also when items are refused:
    each item's `status` is what POST /v1/jobs would have answered for it (an invalid item
    `422`, its problem's `errors` naming its fields), and the valid items are submitted.
    """
    rt = runtime()
    jobs: list[dict[str, Any] | InvalidItem] = data["jobs"]
    _check(rt, jobs)
    items = _submit_each(rt, jobs)
    accepted = sum(1 for i in items if "job" in i)
    return {"items": items, "accepted": accepted, "rejected": len(items) - accepted}


def _check(rt: Runtime, jobs: list[dict[str, Any] | InvalidItem]) -> None:
    """Refuse the whole batch (422) for a malformed envelope only."""
    if len(jobs) > rt.settings.batch_max:
        raise ValidationFailed({"jobs": [f"at most {rt.settings.batch_max} jobs per batch"]})
    if "Idempotency-Key" in request.headers:
        raise ValidationFailed(
            {"Idempotency-Key": ["not supported on a batch; send `max_age` in the items"]}
        )


def _submit_each(rt: Runtime, jobs: list[dict[str, Any] | InvalidItem]) -> list[dict[str, Any]]:
    celery, owner, rid = current_app.extensions["celery"], current_owner(), request_id()
    items: list[dict[str, Any]] = []
    unreachable: DependencyUnavailable | None = None
    for index, job in enumerate(jobs):
        item: dict[str, Any] = {"index": index}
        try:
            if isinstance(job, InvalidItem):  # what the schema refused: this item only
                raise ValidationFailed(job.errors)
            if unreachable is not None:  # the broker just failed: do not wait for it again
                raise unreachable
            done = service.submit_request(rt, celery, job, owner=owner, request_id=rid)
        except DependencyUnavailable as exc:
            unreachable = exc
            item |= {"status": exc.status, "problem": _problem(exc)}
        except CollectqError as exc:
            item |= {"status": exc.status, "problem": _problem(exc)}
        else:
            status, _ = answer_of(done)
            item |= {"status": status, "job": render(done.envelope)}
            if done.reused:
                item["reused"] = done.reused
        items.append(item)
    return items
