"""Options and result of the http collector."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

__all__ = ["HttpOptionsSchema", "HttpResultSchema"]

MiB = 1024 * 1024
# Headers a client must not set: they belong to the connection, not the request.
_FORBIDDEN_HEADERS = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "content-length",
}


class HttpOptionsSchema(Schema):
    class Meta:
        unknown = RAISE

    method = fields.String(load_default="GET", validate=validate.OneOf(["GET", "HEAD"]))
    headers = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")),
        values=fields.String(validate=validate.Length(max=8192)),
        load_default=dict,
        validate=validate.Length(max=50),
    )
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=55))
    follow_redirects = fields.Boolean(load_default=True)
    max_redirects = fields.Integer(load_default=5, validate=validate.Range(min=0, max=20))
    max_body_bytes = fields.Integer(
        load_default=5 * MiB, validate=validate.Range(min=1, max=50 * MiB)
    )

    @validates("headers")
    def _no_hop_headers(self, value: dict[str, str], **_: Any) -> None:
        bad = sorted(k for k in value if k.lower() in _FORBIDDEN_HEADERS)
        if bad:
            raise ValidationError(f"these headers cannot be set: {', '.join(bad)}")
        if any("\r" in v or "\n" in v for v in value.values()):
            raise ValidationError("header values must not contain line breaks")


class RedirectSchema(Schema):
    status_code = fields.Integer()
    url = fields.String()


class TimingSchema(Schema):
    ttfb_ms = fields.Float()
    total_ms = fields.Float()


class HttpResultSchema(Schema):
    status_code = fields.Integer(required=True)
    reason = fields.String()
    http_version = fields.String()
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    final_url = fields.String()
    redirects = fields.List(fields.Nested(RedirectSchema))
    content_type = fields.String(allow_none=True)
    body_size = fields.Integer()
    body_truncated = fields.Boolean()
    body_sha256 = fields.String(allow_none=True)
    timing = fields.Nested(TimingSchema)
