"""Options and result of the dns collector."""

from __future__ import annotations

import ipaddress

from marshmallow import RAISE, Schema, ValidationError, fields, validate

__all__ = ["RECORD_TYPES", "DnsOptionsSchema", "DnsResultSchema"]

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "CAA")


def _ip_literal(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValidationError("must be an IP address") from exc


class DnsOptionsSchema(Schema):
    class Meta:
        unknown = RAISE

    types = fields.List(
        fields.String(validate=validate.OneOf(RECORD_TYPES)),
        load_default=lambda: ["A", "AAAA"],
        validate=validate.Length(min=1, max=len(RECORD_TYPES)),
    )
    nameserver = fields.String(
        load_default=None,
        allow_none=True,
        validate=_ip_literal,
        metadata={
            "description": "resolver to ask (default: the deployment's DNS_RESOLVER, else the "
            "system's); network-guarded"
        },
    )
    port = fields.Integer(load_default=53, validate=validate.Range(min=1, max=65535))
    timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0.1, max=30))
    tcp_fallback = fields.Boolean(
        load_default=True, metadata={"description": "retry over TCP when a UDP answer is truncated"}
    )


class RecordSchema(Schema):
    value = fields.String(required=True)
    ttl = fields.Integer(required=True)


class AnswerSchema(Schema):
    rcode = fields.String(required=True, metadata={"example": "NOERROR"})
    records = fields.List(fields.Nested(RecordSchema), required=True)
    withheld = fields.List(
        fields.String(),
        metadata={
            "description": "the class (private, loopback, ...) of each address record withheld: "
            "in staging/prod, addresses neither global nor in NET_ALLOW are not shown"
        },
    )
    authoritative = fields.Boolean()
    authenticated = fields.Boolean(metadata={"description": "the AD (DNSSEC validated) flag"})
    truncated_udp = fields.Boolean()
    transport = fields.String()


class DnsResultSchema(Schema):
    name = fields.String(required=True)
    resolver = fields.String(
        required=True,
        metadata={
            "description": "address:port asked; `default` for the deployment's own resolver in "
            "staging/prod (its address is not shown)"
        },
    )
    nxdomain = fields.Boolean(required=True)
    answers = fields.Dict(keys=fields.String(), values=fields.Nested(AnswerSchema), required=True)
