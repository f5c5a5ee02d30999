"""Webhooks: a job's callback, its deliveries, an owner's signing secret."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from schemas import NAMED_URL_PATTERN, FullMatch

__all__ = [
    "CALLBACK_ARTIFACTS",
    "CALLBACK_ON",
    "MAX_CALLBACK_URL",
    "CallbackSchema",
    "DeliveryListSchema",
    "DeliverySchema",
    "EVENTS",
    "WebhookEndpointSchema",
    "WebhookEndpointSetSchema",
    "WebhookSecretSchema",
    "callback_artifacts_field",
    "callback_on_field",
    "callback_url_field",
]

MAX_CALLBACK_URL = 2048
CALLBACK_ON = ("always", "failure", "change")
CALLBACK_ARTIFACTS = ("links", "inline")
# Every event a delivery can carry: a job's end, a schedule's change, and the owner's
# account events (sent to the owner's endpoint, /v1/webhooks/endpoint).
EVENTS = ("job.succeeded", "job.partial", "job.failed", "schedule.changed", "key.expiring")


def _unique(values: list[str]) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("must not repeat")


def callback_url_field(**kwargs: object) -> fields.String:
    """An http(s) URL naming its host (no IP literal); the network guard judges the
    addresses too (`app.jobs.callback` at submit, the guarded connection at delivery)."""
    return fields.String(
        validate=[
            validate.Length(min=1, max=MAX_CALLBACK_URL),
            FullMatch(
                NAMED_URL_PATTERN,
                error="not an http(s) URL with a host name (IP literals are not accepted)",
            ),
        ],
        metadata={
            "description": (
                "where the job's end is POSTed, signed (Standard Webhooks; README "
                "'Webhooks'): http(s) with a host name, not an IP literal; must pass the "
                "network guard like a target"
            ),
            "example": "https://hooks.example.org/collectq",
        },
        **kwargs,  # type: ignore[arg-type]
    )


def callback_on_field(**kwargs: object) -> fields.List[str]:
    return fields.List(
        fields.String(validate=validate.OneOf(CALLBACK_ON)),
        validate=[validate.Length(min=1, max=len(CALLBACK_ON)), _unique],
        metadata={
            "description": (
                "when to call: `always` (every final status but cancelled), `failure` "
                "(partial, failed, expired), `change` (a scheduled run whose result changed); "
                "ignored without a callback URL"
            ),
            "example": ["always"],
            "uniqueItems": True,  # the document states what `_unique` checks
        },
        **kwargs,  # type: ignore[arg-type]
    )


def callback_artifacts_field(**kwargs: object) -> fields.String:
    return fields.String(
        validate=validate.OneOf(CALLBACK_ARTIFACTS),
        metadata={
            "description": (
                "artifacts in the webhook body: `links` (default: a `url` each) or `inline` "
                "(also `content_base64`, up to `WEBHOOK_INLINE_MAX_BYTES` per delivery; an "
                "artifact beyond it stays a link with `inline: false`); ignored without a "
                "callback URL"
            ),
            "example": "links",
        },
        **kwargs,  # type: ignore[arg-type]
    )


class CallbackSchema(Schema):
    url = fields.String(required=True)
    on = fields.List(fields.String(), required=True)
    artifacts = fields.String(
        validate=validate.OneOf(CALLBACK_ARTIFACTS),
        metadata={"description": "present when `inline` (absent: links)"},
    )


class AttemptSchema(Schema):
    attempt = fields.Integer()
    at = fields.String(required=True)
    status_code = fields.Integer(allow_none=True, metadata={"description": "the receiver's"})
    error = fields.String(allow_none=True, metadata={"description": "why no answer came"})
    duration_ms = fields.Float()
    response = fields.String(allow_none=True, metadata={"description": "first 256 bytes"})
    retry_in_s = fields.Float(metadata={"description": "when the next attempt is due"})


class DeliverySchema(Schema):
    id = fields.String(required=True, metadata={"description": "also the `webhook-id` header"})
    event = fields.String(required=True, validate=validate.OneOf(EVENTS))
    url = fields.String(required=True)
    state = fields.String(
        required=True, validate=validate.OneOf(("pending", "retrying", "delivered", "failed"))
    )
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    attempts = fields.List(fields.Nested(AttemptSchema), required=True)


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)


class WebhookSecretSchema(Schema):
    secret = fields.String(
        required=True, metadata={"description": "`whsec_` + base64 of the key bytes"}
    )
    created_at = fields.String(required=True)
    previous = fields.String(
        allow_none=True, metadata={"description": "the rotated-out secret, while it still signs"}
    )
    previous_valid_until = fields.String(allow_none=True)


class WebhookEndpointSetSchema(Schema):
    class Meta:
        unknown = RAISE

    url = callback_url_field(required=True)


class WebhookEndpointSchema(Schema):
    url = fields.String(required=True)
    events = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "what is sent there: key.expiring (a key of yours)"},
    )
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
