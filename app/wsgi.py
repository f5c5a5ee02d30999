"""The WSGI entry module for gunicorn: `app.wsgi:application`.

An API with COLLECTQ_AUTH=off starts only as the child of `collectq up` (the token in its
environment matches the run file of the `up` in its directory), and then answers only
connections that arrive on a loopback address from a loopback peer, whatever it was bound
to (`gunicorn -b 0.0.0.0:…` included).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from app import create_app
from app.settings import UP_TOKEN_VAR, load_settings, open_api_refusal, open_request_allowed, up_run

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _local_address(environ: dict[str, Any]) -> str | None:
    """The address the server accepted this connection on (gunicorn, werkzeug), if known."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    try:
        name = sock.getsockname() if sock is not None else None
    except OSError:
        return None
    return str(name[0]) if isinstance(name, tuple) else None  # AF_UNIX: a path, refused


def loopback_only(app: WSGIApp) -> WSGIApp:
    """Refuse (403) every request that is not loopback to loopback."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if open_request_allowed(_local_address(environ), environ.get("REMOTE_ADDR")):
            return app(environ, start_response)
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "detail": "authentication is off: this API answers loopback connections only",
            }
        ).encode()
        headers = [("Content-Type", "application/problem+json"), ("Content-Length", str(len(body)))]
        start_response("403 FORBIDDEN", headers)
        return [body]

    return guarded


def build() -> Flask:
    settings = load_settings()
    refusal = open_api_refusal(settings, os.environ.get(UP_TOKEN_VAR), up_run())
    if refusal is not None:
        # Not SystemExit: gunicorn then halts ("Worker failed to boot") instead of retrying.
        raise RuntimeError(f"collectq: {refusal}")
    flask_app = create_app(settings)
    if not settings.auth:
        flask_app.wsgi_app = loopback_only(flask_app.wsgi_app)  # type: ignore[method-assign,assignment]
    return flask_app


application = build()
