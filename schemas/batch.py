"""POST /v1/jobs/batch: many job requests in one call, each accepted or rejected on its own."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from schemas.errors import ProblemSchema
from schemas.job import EnvelopeSchema, JobRequestSchema

__all__ = ["BATCH_LIMIT", "BatchItemSchema", "BatchRequestSchema", "BatchResponseSchema"]

# The schema's bound; the server's (COLLECTQ_BATCH_MAX, ≤ this) is checked by the view.
BATCH_LIMIT = 1000


class _AsIs(fields.Nested):
    """Documented as its schema; written as built (a problem keeps every member)."""

    def _serialize(self, nested_obj: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return nested_obj


class BatchRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    # A batch is well-formed or refused whole (422 naming `jobs.<index>.<field>`), as the
    # document says; what the document cannot say (quota, reuse, the broker, a server
    # bound) is answered per item (docs/decisions.md).
    jobs = fields.List(
        fields.Nested(JobRequestSchema),
        required=True,
        validate=validate.Length(min=1, max=BATCH_LIMIT),
        metadata={
            "description": "job requests, as for POST /v1/jobs (at most the server's `BATCH_MAX`)",
            "example": [
                {"target": "https://example.org", "collectors": ["http"]},
                {"target": "example.org", "collectors": ["dns", "tls"], "max_age": 600},
            ],
        },
    )


class BatchItemSchema(Schema):
    index = fields.Integer(required=True, metadata={"description": "position in `jobs`"})
    status = fields.Integer(
        required=True,
        metadata={
            "description": "what POST /v1/jobs would have answered: 202 accepted, 200 reused "
            "(succeeded), 422 invalid, 429 quota, 503 broker unreachable (not attempted)"
        },
    )
    job = fields.Nested(EnvelopeSchema, metadata={"description": "the job (2xx)"})
    reused = fields.String(
        validate=validate.OneOf(["succeeded", "in-flight"]),
        metadata={"description": "set when an identical job was reused (`max_age`)"},
    )
    problem = _AsIs(ProblemSchema, metadata={"description": "why the item was refused (4xx/5xx)"})


class BatchResponseSchema(Schema):
    items = fields.List(fields.Nested(BatchItemSchema), required=True)
    accepted = fields.Integer(required=True, metadata={"description": "items with a job"})
    rejected = fields.Integer(required=True, metadata={"description": "items with a problem"})
