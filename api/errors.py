"""The one error handler: every error leaves as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json, request
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from api.requests import request_id
from app.errors import CollectqError, DependencyUnavailable
from schemas.errors import PROBLEM_CONTENT_TYPE

__all__ = ["init_errors", "problem"]

log = logging.getLogger("collectq.api")
PROBLEM = PROBLEM_CONTENT_TYPE
_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "dependency_unavailable",
}


def problem(
    status: int,
    title: str,
    detail: str,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {
        "type": f"https://collectq.dev/problems/{type_ or _TYPES.get(status, 'error')}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": request_id(),
        **extra,
    }
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    resp.headers.update(headers or {})
    return resp


def _from_collectq(exc: CollectqError) -> Response:
    return problem(exc.status, exc.title, exc.detail, exc.type, exc.headers(), **exc.extra())


def _from_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    extra: dict[str, Any] = {}
    # webargs (flask-smorest) puts per-field messages on exc.data["messages"]
    messages = getattr(exc, "data", {}).get("messages") if hasattr(exc, "data") else None
    detail = exc.description or ""
    if status == 422 and messages:
        # {"json": {...}} / {"query": {...}}: keep the field names, drop the location
        extra["errors"] = (
            {k: v for loc in messages.values() for k, v in loc.items()}
            if all(isinstance(v, dict) for v in messages.values())
            else messages
        )
        detail = "the request has invalid fields"
    elif status == 400 and messages:
        detail = "malformed JSON body"
    reason = getattr(exc, "reason", None)  # api.requests.InvalidJSON: a code of the cause
    if reason:
        extra["reason"] = reason
    headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
    return problem(
        status, exc.name, detail, getattr(exc, "problem_type", None), headers=headers, **extra
    )


def init_errors(app: Flask) -> None:
    app.register_error_handler(CollectqError, _from_collectq)
    app.register_error_handler(HTTPException, _from_http)

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _redis_down(exc: Exception) -> Response:
        log.warning("redis unreachable: %r", exc)
        return _from_collectq(DependencyUnavailable("redis"))

    @app.errorhandler(OperationalError)
    def _broker_down(exc: Exception) -> Response:
        log.warning("broker unreachable: %r", exc)
        return _from_collectq(DependencyUnavailable("broker"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error", "an unexpected error occurred; it was logged")
