"""POST /v1/jobs/batch: many job requests in one call, each accepted or rejected on its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, utils, validate

from schemas.errors import ProblemSchema
from schemas.job import EnvelopeSchema, JobRequestSchema

__all__ = [
    "BATCH_LIMIT",
    "BatchItemSchema",
    "BatchRequestSchema",
    "BatchResponseSchema",
    "InvalidItem",
]

# The schema's bound; the server's (COLLECTQ_BATCH_MAX, ≤ this) is checked by the view.
BATCH_LIMIT = 1000


class _AsIs(fields.Nested):
    """Documented as its schema; written as built (a problem keeps every member)."""

    def _serialize(self, nested_obj: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return nested_obj


@dataclass(frozen=True)
class InvalidItem:
    """An item that `JobRequestSchema` refused: its messages, keyed by field."""

    errors: dict[str, Any]


class _EachItem(fields.List[Any]):
    """Documented as a list of its inner schema; each item is loaded on its own.

    An item the inner schema refuses becomes an `InvalidItem` in its slot (answered 422
    there) instead of refusing the list: only the list itself (not a list, its length) is
    the envelope's error.
    """

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Any]:
        if not utils.is_collection(value):
            raise self.make_error("invalid")
        items: list[Any] = []
        for each in value:
            try:
                items.append(self.inner.deserialize(each, **kwargs))
            except ValidationError as exc:
                errors = (
                    exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
                )
                items.append(InvalidItem(errors))
        return items


class BatchRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    # Only the envelope is refused whole (not an object, `jobs` missing, not a list, empty,
    # over the bound); an item is a job request, loaded by itself: an invalid one is a 422
    # in its slot of the 200 answer and the others are submitted (docs/decisions.md).
    jobs = _EachItem(
        fields.Nested(JobRequestSchema),
        required=True,
        validate=validate.Length(min=1, max=BATCH_LIMIT),
        metadata={
            "description": "job requests, as for POST /v1/jobs (at most the server's "
            "`BATCH_MAX`); each is accepted or rejected on its own: an invalid item is "
            "answered `422` in its slot of the `200` answer, not by refusing the batch",
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
            "(succeeded), 422 invalid (the problem's `errors` name the item's fields), 429 "
            "quota, 503 broker unreachable (not attempted)"
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
