"""Job request and result envelope: the one format of the API, the CLI and exports."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas import (
    HOSTNAME_MAX,
    HOSTNAME_PATTERN,
    IPV6_LITERAL_PATTERN,
    SCHEMA_VERSION,
    URL_PATTERN,
    FullMatch,
    full_match,
)
from schemas.policy import split_policy_options
from schemas.status import CollectorStatus, JobStatus
from schemas.webhooks import (
    CallbackSchema,
    callback_artifacts_field,
    callback_on_field,
    callback_url_field,
)

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
MAX_AGE = 30 * 24 * 3600  # the schema's bound of `max_age`; the server's is MAX_AGE_MAX
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
_COLLECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# What the OpenAPI document says a target is (api.collectors puts it there): one of these
# forms, each a subset of what the checks in validate_target let through.
TARGET_FORMS: tuple[tuple[str, int], ...] = (
    (URL_PATTERN, MAX_TARGET),
    (HOSTNAME_PATTERN, HOSTNAME_MAX),
    (IPV6_LITERAL_PATTERN, MAX_TARGET),
)


def validate_target(value: str) -> None:
    """A target is an http(s) URL with a host, or a bare host name / IP literal."""
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValidationError("must not contain whitespace or control characters")
    if "://" in value:
        _check_url(value)
        _documented_form(value)
        return
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if ":" in host:  # an IPv6 literal
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValidationError("not a valid host name, IP address or URL") from exc
        _documented_form(value)
        return
    if not _HOSTNAME.match(host):
        raise ValidationError("not a valid host name, IP address or URL")
    _documented_form(value)


def _check_url(value: str) -> None:
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. "http://[x": an unclosed or invalid IPv6 host
        raise ValidationError("not a valid URL") from exc
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


def _documented_form(value: str) -> None:
    """Accept exactly the forms the OpenAPI document names (TARGET_FORMS)."""
    if not any(len(value) <= most and full_match(p, value) for p, most in TARGET_FORMS):
        raise ValidationError(
            "not a host name, IP address or http(s) URL in the documented form "
            "(ASCII, non-ASCII percent-encoded; IPv6 without zone or embedded IPv4)"
        )


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
        fields.String(validate=FullMatch(_COLLECTOR_NAME, error="not a collector name")),
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
        keys=fields.String(validate=FullMatch(_LABEL_KEY, error="invalid label key")),
        values=fields.String(validate=validate.Length(max=256)),
        load_default=dict,
        validate=validate.Length(max=MAX_LABELS),
    )

    max_age = fields.Integer(
        validate=validate.Range(min=0, max=MAX_AGE),
        metadata={
            "description": (
                "seconds: answer with an identical job of yours (same target, collectors, "
                "options, callback) that is still queued/running, or that succeeded at most "
                "this long ago, instead of collecting again (200 + `Collectq-Reused: "
                "succeeded`, or 202 + `Collectq-Reused: in-flight`). Absent or `0`: "
                "in-flight jobs only (identical requests are never enqueued twice). At "
                "most the server's `MAX_AGE_MAX`."
            ),
            "example": 300,
        },
    )
    fresh = fields.Boolean(
        load_default=False,
        metadata={
            "description": (
                "`true`: always a new job, even while an identical one of yours is queued or "
                "running; `max_age` is then ignored"
            ),
        },
    )

    callback_url = callback_url_field()
    callback_on = callback_on_field()  # without callback_url it is ignored (no cross-field
    # rule the OpenAPI document could not state)
    callback_artifacts = callback_artifacts_field()  # as callback_on

    # name -> options schema of each available collector; set from the registry at start
    # (api.collectors.document_collectors), as the OpenAPI document is
    option_schemas: ClassVar[Mapping[str, type[Schema]]] = {}

    @validates_schema
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        names = data.get("collectors") or []
        if len(set(names)) != len(names):
            raise ValidationError("collectors must not repeat", "collectors")
        # Options for a collector the job does not run are checked like any and then
        # dropped (the service keeps those of the job's collectors): the document cannot
        # tie `options` to `collectors` in a form clients' generators read
        # (docs/decisions.md, "Hardening: API surface").
        errors: dict[str, Any] = {}
        for name, given in sorted((data.get("options") or {}).items()):
            if name in names:
                continue  # the service checks these, with the registry's reasons
            schema = self.option_schemas.get(name)
            if schema is None:
                errors[name] = ["not an available collector"]
                continue
            try:
                schema().load(split_policy_options(given)[0] if isinstance(given, dict) else given)
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors, "options")


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
    callback = fields.Nested(CallbackSchema, allow_none=True)
    results = fields.Dict(keys=fields.String(), values=fields.Nested(CollectorResultSchema))


class JobListSchema(Schema):
    items = fields.List(fields.Nested(EnvelopeSchema), required=True)
    next_cursor = fields.String(allow_none=True)


class JobListArgsSchema(_Strict):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(validate=validate.Length(max=128))
    status = fields.String(validate=validate.OneOf(list(JobStatus)))
    collector = fields.String(validate=FullMatch(_COLLECTOR_NAME))
    label = fields.String(
        validate=FullMatch(r"^[^=]{1,64}=[^\n]{0,256}$", error="use key=value"),
        metadata={"description": "key=value"},
    )


class WaitArgsSchema(_Strict):
    wait = fields.Float(
        load_default=0.0,
        validate=validate.Range(min=0, max=300),
        metadata={"description": "seconds to wait for a terminal state (capped by the server)"},
    )
