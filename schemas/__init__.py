"""marshmallow schemas shared by the API, the tasks and the CLI.

The patterns here are written once for both sides: the server checks them with
`FullMatch` and the OpenAPI document carries them as JSON Schema `pattern`s. So
they use the syntax ECMA 262 and Python's `re` read the same way (explicit ASCII
classes, no `\\d`, `\\w`, `\\s`, no lookbehind), anchored with ``^…$``.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

SCHEMA_VERSION = 1

__all__ = [
    "HOSTNAME_MAX",
    "HOSTNAME_PATTERN",
    "IPV4_PATTERN",
    "IPV6_LITERAL_PATTERN",
    "IPV6_PATTERN",
    "IP_PATTERN",
    "NAMED_URL_PATTERN",
    "SCHEMA_VERSION",
    "STREAM_CURSOR_PATTERN",
    "StreamPageArgsSchema",
    "URL_PATTERN",
    "FullMatch",
    "full_match",
]

_H16 = "[0-9A-Fa-f]{1,4}"
# IPv6 in its plain forms (no embedded IPv4, no zone): every string it matches is one
# `ipaddress.IPv6Address` accepts.
_IPV6 = "|".join(
    [
        f"(?:{_H16}:){{7}}{_H16}",
        f"(?:{_H16}:){{1,7}}:",
        f"(?:{_H16}:){{1,6}}:{_H16}",
        *(f"(?:{_H16}:){{1,{6 - n}}}(?::{_H16}){{1,{n + 1}}}" for n in range(1, 6)),
        f":(?:(?::{_H16}){{1,7}}|:)",
    ]
)
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_LABEL = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*\.?"
# 1-65535, no leading zero (port 0 names no service: the network guard refuses it)
_PORT = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# RFC 3986 characters of a path, query and fragment (non-ASCII must be percent-encoded)
_REST = r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]"

IPV4_PATTERN = f"^{_IPV4}$"
IPV6_PATTERN = f"^(?:{_IPV6})$"
IP_PATTERN = f"^(?:{_IPV4}|{_IPV6})$"
# A host name of DNS labels (underscores allowed, as in service names), at most 253 long.
HOSTNAME_PATTERN = f"^{_HOST}$"
HOSTNAME_MAX = 253
STREAM_CURSOR_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"  # a Redis stream entry id
# An http(s) URL: a host name, IPv4 or [IPv6] host, an optional port, no credentials.
URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:{_HOST}|\[(?:{_IPV6})\])(?::{_PORT})?(?:[/?#]{_REST}*)?$"
)
# A webhook receiver's URL: the host is a DNS name (its last label starts with a letter), never
# an IP literal (docs/decisions.md, "Scheduling: webhooks and the job's finalizer").
_TLD = "[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
NAMED_URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:{_LABEL}\.)*{_TLD}\.?(?::{_PORT})?(?:[/?#]{_REST}*)?$"
)
# A bare IPv6 literal, with or without its brackets.
IPV6_LITERAL_PATTERN = rf"^(?:{_IPV6}|\[(?:{_IPV6})\])$"


class FullMatch(validate.Regexp):
    """`validate.Regexp` matching the whole string, as JSON Schema's ``^…$`` does.

    Python's ``$`` also matches before a final newline ("a\\n" passes ``^a$`` with
    `re.match`); ECMA's does not. apispec still documents ``regex.pattern``.
    """

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or re.fullmatch(str(self.regex.pattern), value) is None:
            raise ValidationError(self._format_error(value))
        return value


def full_match(pattern: str, value: str) -> bool:
    """`value` matches all of `pattern` (the one way the server reads a documented pattern)."""
    return re.fullmatch(pattern, value) is not None


class StreamPageArgsSchema(Schema):
    """The query of a list read from a Redis stream, newest first (`app.streampage`)."""

    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = fields.String(
        validate=FullMatch(STREAM_CURSOR_PATTERN, error="not a cursor of this list")
    )
