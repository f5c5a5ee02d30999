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
