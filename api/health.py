"""Liveness, readiness and the service status."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.identity import principal, public, requires
from app.errors import DependencyUnavailable
from app.jobs.health import broker_ok, redis_ok, service_status
from app.runtime import runtime

__all__ = ["blp", "status_view"]

log = logging.getLogger("collectq.api")

blp = Blueprint("health", __name__, description="Health and status")


class HealthSchema(Schema):
    status = fields.String(required=True)


class StatusSchema(Schema):
    """An admin sees hosts, worker nodes, URLs, errors and versions; anyone else counts only."""

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
    versions = fields.Dict(metadata={"description": "admin only"})


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
    """Readiness: Redis and the broker are reachable.

    Public, so a failure names the dependency only; its host, port and error go to the log.
    """
    rt = runtime()
    ok, err = redis_ok(rt)
    if not ok:
        log.warning("not ready: redis unreachable: %s", err)
        raise DependencyUnavailable("redis")
    ok, err = broker_ok(current_app.extensions["celery"], min(2.0, rt.settings.publish_timeout))
    if not ok:
        log.warning("not ready: broker unreachable: %s", err)
        raise DependencyUnavailable("broker")
    return {"status": "ready"}


def status_view() -> dict[str, Any]:
    """The full status for an admin; aggregate counts for any other caller."""
    full = principal().is_admin
    return service_status(runtime(), current_app.extensions["celery"], full=full)


@blp.route("/v1/status")
@requires("jobs:read", "read")
@blp.response(200, StatusSchema)
def status() -> Any:
    """Broker, Redis, workers per queue, queue depths, breakers, reaper (admin: details).

    Without the `admin` scope: ok flags, queue depths, worker counts, breaker counts per
    state and the reaper's last pass; no host or node names, URLs, errors or versions.
    """
    return status_view()
