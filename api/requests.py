"""Per-request plumbing: request ids and the JSON-only body rule."""

from __future__ import annotations

import re
import secrets

from flask import Flask, Response, g, request
from werkzeug.exceptions import UnsupportedMediaType

__all__ = ["init_body_rules", "init_requests", "request_id"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id() -> str:
    rid: str = g.get("request_id") or ""
    return rid


def init_requests(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(12)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response


def init_body_rules(app: Flask) -> None:
    @app.before_request
    def _json_only() -> None:
        if request.method in ("POST", "PUT", "PATCH") and request.content_length != 0:
            has_body = request.content_length or request.headers.get("Transfer-Encoding")
            if has_body and not request.is_json:
                raise UnsupportedMediaType("request bodies must be application/json")
