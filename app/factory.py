"""`create_app`: reads settings once and wires every extension."""

from __future__ import annotations

from flask import Flask

from app.celery_app import celery_init_app
from app.logs import configure_logging
from app.runtime import EXTENSION, build_runtime
from app.settings import Settings, load_settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings)
    app = Flask("collectq")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        SECRET_KEY=settings.secret_key,
    )
    app.extensions[EXTENSION] = build_runtime(settings)
    celery_init_app(app)

    from api import init_api  # api → app, never the other way at import time

    init_api(app)
    return app
