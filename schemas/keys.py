"""API keys: what an admin sends to create or rotate one, and the public record."""

from __future__ import annotations

import ipaddress
import re

from limits import parse_many
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from schemas import FullMatch, StreamPageArgsSchema

__all__ = [
    "ADMIN",
    "JWT_OWNER_PREFIX",
    "OWNER_PATTERN",
    "ROUTE_CLASSES",
    "SCOPES",
    "SUBJECT_PATTERN",
    "KeyCreateSchema",
    "KeyCreatedSchema",
    "KeyEventListArgsSchema",
    "KeyEventListSchema",
    "KeyEventSchema",
    "KeyListArgsSchema",
    "KeyListSchema",
    "KeyRotateSchema",
    "KeyRotatedSchema",
    "KeySchema",
    "is_key_owner",
]

SCOPES = ("jobs:read", "jobs:write", "schedules:read", "schedules:write", "admin")
ADMIN = "admin"
# Rate-limit classes of routes; each has its own default (COLLECTQ_RATE_LIMIT_<CLASS>).
ROUTE_CLASSES = ("submit", "read", "admin")
OWNER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:\-]{0,127}$"
# Owners of JWT principals are `jwt:{issuer id}:{subject}` (app.auth.jwtauth); an API-key
# owner may not start with this (any case), so the two kinds of owner never meet. The
# admin index has a key name of its own (app.rediskeys), out of reach of any owner name.
JWT_OWNER_PREFIX = "jwt:"
# A JWT subject: what an owner may be, minus `:` (our key separator), plus `+` (e-mail).
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,127}$"
MAX_KEY_LIFETIME = 10 * 365 * 86400
MAX_OVERLAP = 90 * 86400
MIN_ROTATION_PERIOD = 3600
KEY_EVENTS = ("created", "rotated", "revoked", "new_network", "expiring")
FLAGS = ("expiring", "rotation_due")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValidationError("not an IP network (e.g. 10.0.0.0/8)") from exc


def is_key_owner(owner: str) -> bool:
    """May `owner` be an API key's owner (the pattern, and not a JWT owner's namespace)?"""
    # fullmatch: the pattern's `$` alone would let a trailing newline through
    return re.fullmatch(OWNER_PATTERN, owner) is not None and not owner.lower().startswith(
        JWT_OWNER_PREFIX
    )


def _key_owner(value: str) -> None:
    if value.lower().startswith(JWT_OWNER_PREFIX):
        raise ValidationError(f"owners starting with {JWT_OWNER_PREFIX!r} are reserved for JWTs")
    if not is_key_owner(value):
        raise ValidationError("1-128 of A-Z a-z 0-9 _ . @ : -")


def _rate(value: str) -> None:
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValidationError("not a rate limit (e.g. 100/minute)") from exc


class KeyCreateSchema(_Strict):
    owner = fields.String(
        required=True,
        validate=[
            validate.Regexp(OWNER_PATTERN, error="1-128 of A-Z a-z 0-9 _ . @ : -"),
            _key_owner,
        ],
        metadata={"example": "team-a", "description": "not starting with `jwt:` (reserved)"},
    )
    name = fields.String(
        required=True, validate=validate.Length(min=1, max=64), metadata={"example": "ci"}
    )
    scopes = fields.List(
        fields.String(validate=validate.OneOf(SCOPES)),
        required=True,
        validate=validate.Length(min=1, max=len(SCOPES)),
        metadata={"example": ["jobs:read", "jobs:write"]},
    )
    expires_in = fields.Integer(
        validate=validate.Range(min=60, max=MAX_KEY_LIFETIME),
        metadata={"description": "seconds from now; no expiry when absent"},
    )
    rotation_period = fields.Integer(
        validate=validate.Range(min=MIN_ROTATION_PERIOD, max=MAX_KEY_LIFETIME),
        metadata={
            "description": "seconds after creation when the key is due for rotation (flagged "
            "in headers, `key.expiring` webhook; its successors keep the period); default: "
            "the server's KEY_ROTATION_PERIOD"
        },
    )
    cidrs = fields.List(
        fields.String(validate=[validate.Length(max=64), _network]),
        load_default=list,
        validate=validate.Length(max=16),
        metadata={"description": "client networks the key is valid from; any when empty"},
    )
    rate_limits = fields.Dict(
        keys=fields.String(validate=validate.OneOf(ROUTE_CLASSES)),
        values=fields.String(validate=[validate.Length(max=64), _rate]),
        load_default=dict,
        metadata={"description": "per route class (submit, read, admin), e.g. 1000/minute"},
    )


class KeySchema(Schema):
    prefix = fields.String(required=True, metadata={"description": "the key's public id"})
    owner = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    state = fields.String(
        required=True,
        validate=validate.OneOf(["active", "rotating", "rotated_out", "expired", "revoked"]),
    )
    created_at = fields.String(required=True)
    expires_at = fields.String(allow_none=True)
    last_used_at = fields.String(allow_none=True)
    revoked_at = fields.String(allow_none=True)
    cidrs = fields.List(fields.String())
    rate_limits = fields.Dict(keys=fields.String(), values=fields.String())
    rotated_to = fields.String(allow_none=True)
    rotated_from = fields.String(allow_none=True)
    rotation_period = fields.Integer(allow_none=True)
    rotation_due_at = fields.String(allow_none=True)
    flag = fields.String(
        allow_none=True,
        validate=validate.OneOf(FLAGS),
        metadata={
            "description": "expiring: within the expiry warning window; rotation_due: past "
            "its rotation period; null: neither"
        },
    )


class KeyCreatedSchema(KeySchema):
    token = fields.String(required=True, metadata={"description": "cq_…: shown once, store it now"})


class KeyListSchema(Schema):
    items = fields.List(fields.Nested(KeySchema), required=True)


class KeyListArgsSchema(_Strict):
    owner = fields.String(validate=FullMatch(OWNER_PATTERN))


class KeyRotateSchema(_Strict):
    overlap = fields.Integer(
        validate=validate.Range(min=0, max=MAX_OVERLAP),
        metadata={"description": "seconds the old key keeps working (default: server setting)"},
    )


class KeyRotatedSchema(Schema):
    key = fields.Nested(KeyCreatedSchema, required=True)
    previous = fields.Nested(KeySchema, required=True)


class KeyEventSchema(Schema):
    event = fields.String(required=True, validate=validate.OneOf(KEY_EVENTS))
    at = fields.String(required=True)
    prefix = fields.String(required=True)
    actor = fields.String(
        required=True,
        metadata={"description": "key:{prefix}, jwt:{issuer}:{sub}, self, cli:{user}@{host}"},
    )
    successor = fields.String(metadata={"description": "rotated: the new key's prefix"})
    rotated_from = fields.String(metadata={"description": "created: the key it replaces"})
    network = fields.String(metadata={"description": "new_network: /24 or /64 of the client"})
    reason = fields.String(metadata={"description": "expiring: expiring or rotation_due"})


class KeyEventListSchema(Schema):
    items = fields.List(fields.Nested(KeyEventSchema), required=True)
    next_cursor = fields.String(allow_none=True)


class KeyEventListArgsSchema(StreamPageArgsSchema):
    pass
