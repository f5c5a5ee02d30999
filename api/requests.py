"""Per-request plumbing: request ids, header hygiene, and the one strict JSON body loader.

Every JSON body is read by `loads_strict` and nothing else: it is the JSON module of the
request class (`StrictRequest`), so `request.get_json()` uses it; the body gate
(`init_body_rules`) parses every body before any view runs; and the views' argument
parser (`StrictParser`, on every `Blueprint` of this package) takes that same parsed
value instead of parsing again. A body is refused with 400 problem+json (type
`invalid_json`, a detail naming the cause, `reason` a code for it) when it is:

- not UTF-8 (RFC 8259 §8.1), or not JSON (a syntax error, a BOM, trailing data);
- nested deeper than `MAX_JSON_DEPTH` (checked before parsing: the parser never recurses
  deeply, so no `RecursionError`);
- holding a number out of range (an integer beyond 64 bits, a float that overflows to
  infinity) or NaN / Infinity, which are not JSON;
- holding a string with a lone UTF-16 surrogate (``"\\ud800"``), which is not Unicode
  and cannot be stored or encoded;
- repeating a key in an object (RFC 8259 leaves it undefined; parsers disagree on which
  value wins, so a proxy or a validator could see another body than we do);
- anything but an object at the top, or empty on a route that needs a body.

Header values the API interprets (credentials, Idempotency-Key) must be printable ASCII;
a bad X-Request-ID is replaced, never echoed. docs/decisions.md, "Hardening: requests".
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from itertools import accumulate
from typing import Any

import flask
import flask_smorest
import marshmallow as ma
from flask import Flask, Response, g, request
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.errors import Unauthorized
from app.logcontext import bind, clear
from schemas.errors import PROBLEM_CONTENT_TYPE, ProblemSchema

__all__ = [
    "MAX_JSON_DEPTH",
    "Blueprint",
    "InvalidJSON",
    "JSONBodyError",
    "StrictParser",
    "StrictRequest",
    "init_body_rules",
    "init_requests",
    "loads_strict",
    "request_id",
]

log = logging.getLogger("collectq.auth")  # refused credentials are logged where identity's are
access_log = logging.getLogger("collectq.access")

MAX_JSON_DEPTH = 32
_INT_LIMIT = 2**63  # integers must fit a signed 64-bit integer (as Redis and most clients)
_MAX_INT_DIGITS = 19
_SHOWN = 40  # characters of a refused key or number quoted back in a detail

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_PRINTABLE = re.compile(r"[\t\x20-\x7e]*")
_CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")
_ASCII_HEADERS = ("Idempotency-Key",)

# A string, its closing quote optional: an unterminated one ends the scan (linear time).
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class JSONBodyError(ValueError):
    """A body the strict loader refuses; `reason` is a short code, the message the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class InvalidJSON(BadRequest):
    """400 problem+json of type `invalid_json` (rendered by `api.errors`)."""

    problem_type = "invalid_json"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(description=detail)
        self.reason = reason


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}… ({len(text)} characters)"


def _out_of_range(text: str) -> JSONBodyError:
    return JSONBodyError(
        "number_out_of_range",
        f"number {_clip(text)} is out of range: integers must fit 64 bits, "
        "other numbers a finite double",
    )


def _parse_int(text: str) -> int:
    if len(text) < _MAX_INT_DIGITS:  # at most 18 characters: always within 64 bits
        return int(text)
    # Checked before int(): Python refuses > 4300 digits with a ValueError of its own.
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _out_of_range(text)
    value = int(text)
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        raise _out_of_range(text)
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _out_of_range(text)
    return value


def _parse_constant(name: str) -> Any:
    raise JSONBodyError("not_a_number", f"{name} is not a JSON number (NaN and Infinity are not)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONBodyError("duplicate_key", f"duplicate key {_clip(key)!r} in an object")
            seen.add(key)
    return obj


def _check_depth(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # cannot be deeper (the count includes brackets inside strings)
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise JSONBodyError(
            "too_deep", f"the body is nested too deep: at most {MAX_JSON_DEPTH} levels"
        )


def _check_unicode(text: str, value: Any) -> None:
    # Raw UTF-8 cannot carry a surrogate (strict decoding refused it): only an escape can.
    if not _SURROGATE_ESCAPE.search(text):
        return
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        char = exc.object[exc.start]
        raise JSONBodyError(
            "lone_surrogate",
            f"a string holds a lone UTF-16 surrogate (\\u{ord(char):04x}), which is not "
            "Unicode text; escape a character outside the BMP as a surrogate pair",
        ) from None


def loads_strict(data: str | bytes | bytearray) -> Any:
    """Parse a request body; JSONBodyError (a ValueError) naming the cause if refused."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONBodyError(
                "invalid_utf8", f"the body is not valid UTF-8 (at byte {exc.start}); JSON is UTF-8"
            ) from None
    else:
        text = data
    _check_depth(text)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise JSONBodyError(
            "malformed", f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:  # unreachable after _check_depth; never a 500 all the same
        raise JSONBodyError("too_deep", "the body is nested too deep") from None
    _check_unicode(text, value)
    return value


class _StrictJSON:
    """The JSON module of `StrictRequest` (werkzeug calls `json_module.loads`)."""

    loads = staticmethod(loads_strict)
    dumps = staticmethod(flask.json.dumps)


class StrictRequest(flask.Request):
    """Flask's request whose `get_json()` is `loads_strict`, refusing with `InvalidJSON`."""

    @property
    def json_module(self) -> Any:
        return _StrictJSON

    @json_module.setter
    def json_module(self, _: Any) -> None:
        """Flask sets the app's JSON provider on each request: bodies keep the strict loader."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise UnsupportedMediaType("request bodies must be application/json")
        if isinstance(e, JSONBodyError):
            raise InvalidJSON(e.detail, e.reason)
        raise InvalidJSON(f"malformed JSON: {e}", "malformed")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def _json_object(req: flask.Request) -> dict[str, Any]:
    """The body as parsed by the strict loader (once per request); it must be an object."""
    body = req.get_json()
    if not isinstance(body, dict):
        raise InvalidJSON(f"the body must be a JSON object, not {_kind(body)}", "not_an_object")
    return body


class StrictParser(FlaskParser):
    """webargs' Flask parser reading JSON through the strict loader, never a second parse."""

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        if not req.get_data(cache=True):
            if any(f.required for f in schema.fields.values()):
                raise InvalidJSON(
                    "the request body is empty; this route takes a JSON object", "empty_body"
                )
            return core.missing
        return _json_object(req)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """flask-smorest's Blueprint whose `arguments` read JSON with `StrictParser`.

    A JSON body also documents its 400 (`invalid_json`) in the OpenAPI document. A schema
    class is instantiated once, here: webargs would build a new instance (deep-copying
    every field) on each request, a tenth of a submit's time.
    """

    ARGUMENTS_PARSER = StrictParser()

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any) -> Any:
        if isinstance(schema, type) and issubclass(schema, ma.Schema):
            schema = schema()
        parse = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return parse
        document = self.alt_response(
            400,
            schema=ProblemSchema,
            content_type=PROBLEM_CONTENT_TYPE,
            description="Not a JSON object the API accepts (`reason` says why)",
        )
        return lambda fn: document(parse(fn))


def request_id() -> str:
    rid: str = g.get("request_id") or ""
    return rid


def _check_headers() -> None:
    for name in _CREDENTIAL_HEADERS:
        value = request.headers.get(name)
        if value is not None and not _PRINTABLE.fullmatch(value):
            log.info(
                "authentication failed: %s is not printable ASCII",
                name,
                extra={"client": request.remote_addr},
            )
            raise Unauthorized(f"malformed credentials: the {name} header must be printable ASCII")
    for name in _ASCII_HEADERS:
        value = request.headers.get(name)
        if value is not None and not _PRINTABLE.fullmatch(value):
            raise BadRequest(f"the {name} header must be printable ASCII")


def init_requests(app: Flask) -> None:
    app.request_class = StrictRequest

    @app.before_request
    def _assign_request_id() -> None:
        g.request_started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        # fullmatch: `$` would let a trailing newline through into the echoed header
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(12)
        clear()  # a gunicorn thread serves many requests: nothing of the last one stays
        bind(request_id=g.request_id)  # every log line of this request carries it
        _check_headers()

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        _log_access(response)
        return response

    @app.teardown_request
    def _forget_request(_: BaseException | None) -> None:
        clear()


def _log_access(response: Response) -> None:
    """One line per request (gunicorn's own access log is off: `app.gunicornlog`).

    The path without its query string (which may carry anything); `route` is the URL
    rule, as the metrics label it.
    """
    started = g.get("request_started")
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else "unmatched",
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
            "client": request.remote_addr,
        },
    )


def _has_body() -> bool:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    return bool(request.content_length or chunked)


def init_body_rules(app: Flask) -> None:
    @app.before_request
    def _json_only() -> None:
        if request.method not in ("POST", "PUT", "PATCH") or request.routing_exception:
            return  # no body to read, or a 404/405 follows
        if not _has_body():
            return
        if not request.is_json:
            raise UnsupportedMediaType("request bodies must be application/json")
        if request.get_data(cache=True):
            _json_object(request)  # parsed once, strictly; the views get this value
