"""`create_app`: reads settings once and wires every extension."""

from __future__ import annotations

import logging
import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.celery_app import celery_init_app
from app.errortracking import init_error_tracking
from app.jobs.broker import confirming_publisher
from app.logs import configure_logging
from app.runtime import EXTENSION, build_runtime
from app.settings import UP_TOKEN_VAR, Settings, load_settings
from app.tracing import init_api_tracing

__all__ = ["create_app"]

log = logging.getLogger("collectq")


def create_app(settings: Settings | None = None, *, api_tracing: bool = True) -> Flask:
    """`api_tracing=False`: a Celery process (`app.worker`), which starts tracing at
    Celery's process signals instead (after the pool's fork)."""
    settings = settings or load_settings()
    configure_logging(settings)
    init_error_tracking(settings)
    # No static folder: Flask would serve <cwd>/static (the import name is no package).
    app = Flask("collectq", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        SECRET_KEY=settings.secret_key,
        DEBUG=settings.debug,
    )
    if settings.trusted_proxies:
        # Trust exactly that many X-Forwarded-* hops: more would let a client pick
        # its own address (and so its own rate-limit bucket).
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    if api_tracing:
        init_api_tracing(app)  # before the API's hooks: its span opens first
    if not settings.auth and not os.environ.get(UP_TOKEN_VAR):
        # `collectq up` (whose children hold UP_TOKEN_VAR) says it once in its banner,
        # rather than once per process here.
        log.warning(
            "AUTH IS OFF (COLLECTQ_AUTH=off, dev profile): every caller is admin; "
            "loopback only (%s)",
            settings.api_host,
        )
    app.extensions[EXTENSION] = rt = build_runtime(settings)
    celery = celery_init_app(app)
    with celery.connection_for_write() as conn:  # not connected: the transport's kind only
        amqp = conn.transport.driver_type == "amqp"
    if amqp:  # RabbitMQ: confirms awaited together (a Redis broker has no publisher confirms)
        rt.publisher = confirming_publisher(celery, settings.publish_timeout)

    from api import init_api  # api → app, never the other way at import time

    init_api(app)
    return app
