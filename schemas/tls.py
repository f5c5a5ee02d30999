"""Options and result of the tls collector."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

__all__ = ["TlsOptionsSchema", "TlsResultSchema"]


class TlsOptionsSchema(Schema):
    class Meta:
        unknown = RAISE

    port = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=65535),
        metadata={"description": "default: the URL's port, else 443"},
    )  # fmt: skip
    server_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=253),
        metadata={"description": "SNI and the name to verify (default: the target's host)"},
    )  # fmt: skip
    timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=55))
    min_days_warning = fields.Integer(load_default=14, validate=validate.Range(min=0, max=3650))
    ca_pem = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=65536),
        metadata={"description": "extra trusted CA certificates (PEM), e.g. a private CA"},
    )  # fmt: skip


class CertificateSchema(Schema):
    subject = fields.String()
    issuer = fields.String()
    sans = fields.List(fields.String())
    serial = fields.String()
    not_before = fields.String()
    not_after = fields.String()
    days_to_expiry = fields.Integer()
    key_type = fields.String()
    key_size = fields.Integer(allow_none=True)
    signature_algorithm = fields.String(allow_none=True)
    sha256 = fields.String()


class VerificationSchema(Schema):
    verified = fields.Boolean(required=True)
    error = fields.String(allow_none=True)
    error_code = fields.Integer(allow_none=True)
    hostname_match = fields.Boolean(required=True)


class TlsResultSchema(Schema):
    host = fields.String(required=True)
    port = fields.Integer(required=True)
    server_name = fields.String(required=True)
    protocol = fields.String(allow_none=True)
    cipher = fields.Dict(allow_none=True)
    chain = fields.List(fields.Nested(CertificateSchema))
    verification = fields.Nested(VerificationSchema, required=True)
    days_to_expiry = fields.Integer(allow_none=True)
    expiry_warning = fields.Boolean()
