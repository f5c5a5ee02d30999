"""Options and result of the http collector."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

__all__ = ["FORBIDDEN_HEADERS", "HttpOptionsSchema", "HttpResultSchema"]

MiB = 1024 * 1024
MAX_HEADERS = 50
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 8192

# Headers a caller must not set: Host is fixed by the URL (and the guard checked that
# host's address), the rest belong to the connection, not the request, and are the
# usual tools of request smuggling.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)
_FIELD_NAME_RE = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # RFC 9110 field-name


def _bad_value_char(c: str) -> bool:
    # RFC 9110 field-value: VCHAR, obs-text, SP, HTAB. CR/LF would split the request;
    # http.client sends headers as Latin-1, so anything beyond it could not be sent anyway.
    n = ord(c)
    return n > 0xFF or n == 0x7F or (n < 0x20 and c != "\t")


class HttpOptionsSchema(Schema):
    """What to fetch and how; every bound is here so a job cannot ask for unbounded work."""

    class Meta:
        unknown = RAISE

    method = fields.String(load_default="GET", validate=validate.OneOf(["GET", "HEAD"]))
    headers = fields.Dict(
        keys=fields.String(
            validate=[
                validate.Length(min=1, max=MAX_HEADER_NAME),
                validate.Regexp(_FIELD_NAME_RE, error="not a valid header name"),
            ]
        ),
        values=fields.String(validate=validate.Length(max=MAX_HEADER_VALUE)),
        load_default=dict,
        validate=validate.Length(max=MAX_HEADERS),
        metadata={"description": "extra request headers; Host and hop-by-hop ones are refused"},
    )
    timeout = fields.Float(
        load_default=10.0,
        validate=validate.Range(min=0.1, max=55),
        metadata={"description": "seconds for the whole fetch: every hop and the body"},
    )
    follow_redirects = fields.Boolean(load_default=True)
    max_redirects = fields.Integer(load_default=5, validate=validate.Range(min=0, max=20))
    max_body_bytes = fields.Integer(
        load_default=5 * MiB,
        validate=validate.Range(min=1, max=50 * MiB),
        metadata={"description": "the body is cut here and marked body_truncated"},
    )

    @validates("headers")
    def _safe_headers(self, value: dict[str, str], **_: Any) -> None:
        bad = sorted(k for k in value if k.lower() in FORBIDDEN_HEADERS)
        if bad:
            raise ValidationError(f"these headers cannot be set: {', '.join(bad)}")
        lowered = [k.lower() for k in value]
        if len(set(lowered)) != len(lowered):
            raise ValidationError("header names must be unique (case-insensitively)")
        if any(_bad_value_char(c) for v in value.values() for c in v):
            raise ValidationError("header values must be Latin-1 text without control characters")


class RedirectSchema(Schema):
    """One followed redirect: the URL that answered and its status."""

    status_code = fields.Integer(required=True)
    url = fields.String(required=True)


class TimingSchema(Schema):
    """Milliseconds from the start of the fetch (all hops included)."""

    connect_ms = fields.Float(
        required=True,
        metadata={"description": "time in new connections (DNS, TCP, TLS); 0 when all reused"},
    )
    ttfb_ms = fields.Float(required=True, metadata={"description": "until the final headers"})
    total_ms = fields.Float(required=True, metadata={"description": "until the body was read"})


class HttpResultSchema(Schema):
    """The final response of a fetch; the body itself is the `http.body` artifact."""

    status_code = fields.Integer(required=True)
    reason = fields.String(required=True)
    headers = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    http_version = fields.String(required=True, metadata={"example": "HTTP/1.1"})
    final_url = fields.String(required=True)
    redirects = fields.List(fields.Nested(RedirectSchema), required=True)
    body_size = fields.Integer(required=True, metadata={"description": "bytes kept"})
    body_truncated = fields.Boolean(required=True)
    body_sha256 = fields.String(
        required=True, allow_none=True, metadata={"description": "of the kept bytes; null for HEAD"}
    )
    content_type = fields.String(required=True, allow_none=True)
    timing = fields.Nested(TimingSchema, required=True)
