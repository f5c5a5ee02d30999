"""The problem+json error body (RFC 9457), as documented in the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, fields

__all__ = ["PROBLEM_CONTENT_TYPE", "ProblemSchema"]

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemSchema(Schema):
    type = fields.String(required=True, metadata={"description": "a URI naming the problem"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    instance = fields.String(metadata={"description": "the request path"})
    request_id = fields.String()
    errors = fields.Dict(metadata={"description": "per-field messages (422)"})
    reason = fields.String(
        metadata={
            "description": "why a body was refused (400 invalid_json): malformed, invalid_utf8, "
            "too_deep, number_out_of_range, not_a_number, lone_surrogate, duplicate_key, "
            "not_an_object, empty_body"
        }
    )
