"""Job request and result envelope: the one format of the API, the CLI and exports."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas import SCHEMA_VERSION
from schemas.status import CollectorStatus, JobStatus

__all__ = [
    "ArtifactInfoSchema",
    "CollectorResultSchema",
    "EnvelopeSchema",
    "ErrorInfoSchema",
    "JobListArgsSchema",
    "JobListSchema",
    "JobRequestSchema",
    "WaitArgsSchema",
    "validate_target",
]

MAX_TARGET = 2048
MAX_COLLECTORS = 16
MAX_LABELS = 32
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
_COLLECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def validate_target(value: str) -> None:
    """A target is an http(s) URL with a host, or a bare host name / IP literal."""
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValidationError("must not contain whitespace or control characters")
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValidationError("URL scheme must be http or https")
        if parts.username is not None or parts.password is not None:
            raise ValidationError("URL must not carry credentials")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValidationError("URL port is invalid") from exc
        if not parts.hostname:
            raise ValidationError("URL must have a host")
        return
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in host:  # an IPv6 literal
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValidationError("not a valid host name, IP address or URL") from exc
        return
    if not _HOSTNAME.match(host):
        raise ValidationError("not a valid host name, IP address or URL")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class JobRequestSchema(_Strict):
    target = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=MAX_TARGET), validate_target],
        metadata={
            "description": "http(s) URL, host name or IP address",
            "example": "https://example.org",
        },
    )
    collectors = fields.List(
        fields.String(validate=validate.Regexp(_COLLECTOR_NAME, error="not a collector name")),
        required=True,
        validate=validate.Length(min=1, max=MAX_COLLECTORS),
        metadata={"example": ["http"]},
    )
    options = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        load_default=dict,
        metadata={"description": "per-collector options, keyed by collector name"},
    )
    labels = fields.Dict(
        keys=fields.String(validate=validate.Regexp(_LABEL_KEY, error="invalid label key")),
        values=fields.String(validate=validate.Length(max=256)),
        load_default=dict,
        validate=validate.Length(max=MAX_LABELS),
    )

    @validates_schema
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        names = data.get("collectors") or []
        if len(set(names)) != len(names):
            raise ValidationError("collectors must not repeat", "collectors")
        extra = sorted(set(data.get("options") or {}) - set(names))
        if extra:
            raise ValidationError(
                {name: ["options given for a collector the job does not run"] for name in extra},
                "options",
            )


class ErrorInfoSchema(Schema):
    type = fields.String(required=True)
    detail = fields.String(required=True)
    retryable = fields.Boolean(required=True)


class ArtifactInfoSchema(Schema):
    name = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    url = fields.String(metadata={"description": "where the raw bytes are served"})
    dropped = fields.String(
        metadata={"description": "why the bytes were not kept (then there is no url)"}
    )


class CollectorResultSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(list(CollectorStatus)))
    attempts = fields.Integer(required=True)
    duration_ms = fields.Float(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    data = fields.Dict(allow_none=True)
    artifacts = fields.List(fields.Nested(ArtifactInfoSchema), load_default=list)
    error = fields.Nested(ErrorInfoSchema, allow_none=True)


class EnvelopeSchema(Schema):
    id = fields.String(required=True, metadata={"example": "j_01JD2X5K3V9W8Q7R6T5Y4U3I2O"})
    schema_version = fields.Integer(dump_default=SCHEMA_VERSION)
    status = fields.String(required=True, validate=validate.OneOf(list(JobStatus)))
    target = fields.String(required=True)
    collectors = fields.List(fields.String(), required=True)
    created_at = fields.String(required=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    schedule_id = fields.String(allow_none=True)
    results = fields.Dict(keys=fields.String(), values=fields.Nested(CollectorResultSchema))


class JobListSchema(Schema):
    items = fields.List(fields.Nested(EnvelopeSchema), required=True)
    next_cursor = fields.String(allow_none=True)


class JobListArgsSchema(_Strict):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=128))
    status = fields.String(validate=validate.OneOf(list(JobStatus)))
    collector = fields.String(validate=validate.Regexp(_COLLECTOR_NAME))
    label = fields.String(
        validate=validate.Regexp(r"^[^=]{1,64}=.{0,256}$", error="use key=value"),
        metadata={"description": "key=value"},
    )


class WaitArgsSchema(_Strict):
    wait = fields.Float(
        load_default=0.0,
        validate=validate.Range(min=0, max=300),
        metadata={"description": "seconds to wait for a terminal state (capped by the server)"},
    )
