"""Webhooks: an owner's signing secret (read, rotate) and a job's deliveries."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from api.identity import current_owner, owner_filter, requires
from api.jobs import _job_id as job_id_or_404  # the one job-id rule of /v1/jobs
from api.requests import Blueprint
from app.jobs import service
from app.runtime import runtime
from app.webhooks.deliver import delivery_store, secret_store
from schemas.webhooks import DeliveryListSchema, WebhookSecretSchema

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
