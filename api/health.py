"""Liveness, readiness and the service status."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.identity import public, requires
from app.errors import DependencyUnavailable
from app.jobs.health import broker_ok, redis_ok, service_status
from app.runtime import runtime

__all__ = ["blp", "status_view"]

blp = Blueprint("health", __name__, description="Health and status")


class HealthSchema(Schema):
    status = fields.String(required=True)


class StatusSchema(Schema):
    status = fields.String(required=True)
    redis = fields.Dict(required=True)
    broker = fields.Dict(required=True)
    queues = fields.Dict(required=True)
    breakers = fields.Dict(
        required=True, metadata={"description": "circuit breaker per target host seen recently"}
    )
    reaper = fields.Dict(
        required=True,
        metadata={
            "description": "the reaper's last pass: seconds ago, what it did, on_time "
            "(false: beat or the maintenance worker is not running)"
        },
    )
    collectors = fields.Dict(required=True)
    versions = fields.Dict(required=True)


@blp.route("/health")
@public
@blp.response(200, HealthSchema)
def health() -> Any:
    """Liveness: the process answers. Touches nothing else."""
    return {"status": "ok"}


@blp.route("/ready")
@public
@blp.response(200, HealthSchema)
@blp.alt_response(503, description="Redis or the broker is unreachable")
def ready() -> Any:
    """Readiness: Redis and the broker are reachable."""
    rt = runtime()
    ok, err = redis_ok(rt)
    if not ok:
        raise DependencyUnavailable("redis", f"redis unreachable: {err}")
    ok, err = broker_ok(current_app.extensions["celery"], min(2.0, rt.settings.publish_timeout))
    if not ok:
        raise DependencyUnavailable("broker", f"broker unreachable: {err}")
    return {"status": "ready"}


def status_view() -> dict[str, Any]:
    return service_status(runtime(), current_app.extensions["celery"])


@blp.route("/v1/status")
@requires("jobs:read", "read")
@blp.response(200, StatusSchema)
def status() -> Any:
    """Broker, Redis, workers online per queue, queue depths, breakers, reaper, versions."""
    return status_view()
