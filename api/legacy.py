"""The earlier API, kept as deprecated aliases of v1 (RFC 9745 Deprecation, RFC 8288 Link)."""

from __future__ import annotations

from typing import Any

from flask import Response

from api.health import StatusSchema, status_view
from api.identity import requires
from api.jobs import submit
from api.requests import Blueprint
from schemas.job import EnvelopeSchema, JobRequestSchema

__all__ = ["blp"]

blp = Blueprint("legacy", __name__, description="Deprecated aliases of v1")


def _deprecated(successor: str) -> dict[str, str]:
    return {"Deprecation": "true", "Link": f'<{successor}>; rel="successor-version"'}


@blp.route("/collect", methods=["POST"])
@requires("jobs:write", "submit")
@blp.arguments(JobRequestSchema)
@blp.response(202, EnvelopeSchema)
@blp.doc(deprecated=True)
def collect(data: dict[str, Any]) -> Any:
    """Deprecated: use POST /v1/jobs."""
    envelope, status, headers = submit(data)
    return envelope, status, {**headers, **_deprecated("/v1/jobs")}


@blp.route("/containers/status")
@requires("jobs:read", "read")
@blp.response(200, StatusSchema)
@blp.doc(deprecated=True)
def containers_status() -> Any:
    """Deprecated: use GET /v1/status."""
    return status_view(), 200, _deprecated("/v1/status")


@blp.after_request
def _deprecation_on_errors(response: Response) -> Response:
    # Clients of the old API need the hint on error answers too.
    response.headers.setdefault("Deprecation", "true")
    return response
