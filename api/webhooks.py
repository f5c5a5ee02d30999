"""Webhooks: an owner's signing secret (read, rotate), the owner's account endpoint
(`key.expiring`) and a job's deliveries."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from api.identity import current_owner, owner_filter, requires
from api.jobs import _job_id as job_id_or_404  # the one job-id rule of /v1/jobs
from api.requests import Blueprint
from app.errors import NotFound
from app.jobs import service
from app.jobs.callback import check_callback_url
from app.runtime import runtime
from app.webhooks.deliver import delivery_store, endpoint_store, secret_store
from schemas.webhooks import (
    DeliveryListSchema,
    WebhookEndpointSchema,
    WebhookEndpointSetSchema,
    WebhookSecretSchema,
)

__all__ = ["blp"]

blp = Blueprint(
    "webhooks", __name__, url_prefix="/v1", description="Signed webhooks (Standard Webhooks)"
)


@blp.route("/webhooks/secret")
class Secret(MethodView):
    @requires("jobs:write", "admin")
    @blp.response(200, WebhookSecretSchema)
    def get(self) -> Any:
        """Your signing secret (created on first use); verify deliveries with it."""
        return secret_store(runtime()).get(current_owner()).as_dict()


@blp.route("/webhooks/secret/rotate")
class RotateSecret(MethodView):
    @requires("jobs:write", "admin")
    @blp.response(201, WebhookSecretSchema)
    def post(self) -> Any:
        """A new signing secret; the previous one keeps signing (a second signature)
        for `WEBHOOK_SECRET_OVERLAP` seconds, so receivers can switch over."""
        rt = runtime()
        return (
            secret_store(rt).rotate(current_owner(), rt.settings.webhook_secret_overlap).as_dict()
        )


@blp.route("/webhooks/endpoint")
class Endpoint(MethodView):
    @requires("jobs:read", "read")
    @blp.response(200, WebhookEndpointSchema)
    @blp.alt_response(404, description="No endpoint set")
    def get(self) -> Any:
        """Your account webhook: where events about your account (key.expiring) go."""
        found = endpoint_store(runtime()).get(current_owner())
        if found is None:
            raise NotFound("no webhook endpoint set: PUT one")
        return found

    @requires("jobs:write", "admin")
    @blp.arguments(WebhookEndpointSetSchema)
    @blp.response(200, WebhookEndpointSchema)
    def put(self, data: dict[str, Any]) -> Any:
        """Set your account webhook (signed like every delivery, with your signing secret);
        the URL must pass the network guard like a callback URL."""
        rt = runtime()
        check_callback_url(data["url"], rt.policy, field="url")
        return endpoint_store(rt).put(current_owner(), data["url"])

    @requires("jobs:write", "admin")
    @blp.response(204)
    @blp.alt_response(404, description="No endpoint set")
    def delete(self) -> Any:
        """Remove your account webhook: account events are no longer sent."""
        if not endpoint_store(runtime()).delete(current_owner()):
            raise NotFound("no webhook endpoint set")
        return None


@blp.route("/jobs/<job_id>/deliveries")
@requires("jobs:read", "read")
@blp.response(200, DeliveryListSchema)
@blp.alt_response(404, description="No such job")
def deliveries(job_id: str) -> Any:
    """The job's webhook deliveries, each with its attempts (time, status or error,
    duration, the first bytes of the answer)."""
    rt = runtime()
    service.get_job(rt, job_id_or_404(job_id), owner_filter())
    return {"items": delivery_store(rt).list(job_id)}
