"""Browser-facing rules: CORS from settings and security headers on every answer."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_cors import CORS

from api.identity import NOTICE_HEADERS
from api.ratelimit import EXPOSED_HEADERS
from app.runtime import runtime

__all__ = ["init_webguard"]

_DOCS = "/docs"


def init_webguard(app: Flask) -> None:
    settings = runtime(app).settings
    if settings.cors_origins:  # none configured: same-origin only, no CORS headers at all
        CORS(
            app,
            origins=list(settings.cors_origins),
            methods=list(settings.cors_methods),
            allow_headers=list(settings.cors_headers),
            expose_headers=[
                "Location",
                "Retry-After",
                "X-Request-ID",
                *EXPOSED_HEADERS,
                *NOTICE_HEADERS,
            ],
            supports_credentials=settings.cors_credentials,
            max_age=settings.cors_max_age,
            vary_header=True,
        )

    @app.after_request
    def _security_headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        if not request.path.startswith(_DOCS):
            # JSON and raw artifacts only: nothing may run, load or frame from our answers.
            h.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
            # Job data, keys and status are per caller and change: never cache them.
            h.setdefault("Cache-Control", "no-store")
        return response
