"""OpenTelemetry tracing: on only when an OTLP endpoint is configured (the standard OTEL_* vars).

One job is one trace: the API's HTTP span (Flask instrumentation) → the publish span
(Celery instrumentation, which injects ``traceparent`` into the task message's headers)
→ the task span in the worker (extracted from those headers) → the collector's span
(`app.jobs.collect`, through the OpenTelemetry API).

Each process installs its own tracer provider after the fork, never before it: a
BatchSpanProcessor's thread and the exporter's HTTP connections do not survive a fork.
API: `create_app` in each gunicorn worker (no ``--preload``); Celery: the signals
connected in `app.worker` (a prefork pool's processes at ``worker_process_init``, a
threads/solo worker at ``worker_init``, beat at ``beat_init``).

Without ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``), or with
``OTEL_SDK_DISABLED=true``, nothing is installed: no provider, no Flask hooks, no Celery
signal receivers. The exporter is OTLP over HTTP/protobuf; ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_*`` and the
other standard variables are read by the SDK as usual.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

__all__ = [
    "API_SERVICE",
    "BEAT_SERVICE",
    "REQUEST_ID_ATTRIBUTE",
    "init_api_tracing",
    "init_tracing",
    "init_worker_tracing",
    "shutdown_tracing",
    "tracing_enabled",
    "worker_service",
]

API_SERVICE = "collectq-api"
BEAT_SERVICE = "collectq-beat"
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
REQUEST_ID_ATTRIBUTE = "collectq.request_id"
# Probes would make most of the traces; OTEL_PYTHON_FLASK_EXCLUDED_URLS replaces this.
DEFAULT_EXCLUDED_URLS = "/health"

# The provider this process installed, with the pid that installed it.
_installed: dict[int, TracerProvider] = {}


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when an OTLP endpoint is configured and the SDK is not disabled."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(var, "").strip() for var in ENDPOINT_VARS)


def worker_service(queues: Iterable[str]) -> str:
    """The service name of a worker node: ``collectq-worker-<queue>[+<queue>…]``."""
    return "collectq-worker-" + ("+".join(sorted(queues)) or "all")


def init_tracing(service: str) -> bool:
    """Install the SDK in this process (once; a forked child installs its own).

    `service` is the default ``service.name``; OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES win over it. Returns whether tracing is on.
    """
    if not tracing_enabled():
        return False
    if os.getpid() in _installed:
        return True
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    defaults = {"service.name": service, "service.version": version("collectq")}
    resource = Resource.create(defaults).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _installed[os.getpid()] = provider
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _connect_task_attributes()
    return True


def init_api_tracing(app: Flask) -> None:
    """The API process's tracing: the provider and the Flask request spans.

    Called before the API's own before-request hooks are registered, so that the span
    opens first and covers a request the authentication or the rate limiter refuses.
    """
    if not init_tracing(API_SERVICE):
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    excluded = (
        os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS")
        or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
        or DEFAULT_EXCLUDED_URLS
    )
    FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
        app,
        response_hook=_request_id_from_response,
        tracer_provider=_installed[os.getpid()],
        excluded_urls=excluded,
    )


def shutdown_tracing() -> None:
    """Export what is still queued (a pool process that exits skips atexit handlers)."""
    provider = _installed.get(os.getpid())
    if provider is not None:
        provider.force_flush(timeout_millis=5000)


def _request_id_from_response(span: Span, status: str, headers: list[tuple[str, str]]) -> None:
    # The id the API echoes (the client's, when valid, or the one it made up).
    if span is None or not span.is_recording():
        return
    for name, value in headers:
        if name.lower() == "x-request-id":
            span.set_attribute(REQUEST_ID_ATTRIBUTE, value)


def _connect_task_attributes() -> None:
    from celery.signals import task_prerun

    task_prerun.connect(_task_attributes, weak=False, dispatch_uid="collectq.tracing")


def _task_attributes(task: Any = None, args: Any = None, **_: Any) -> None:
    """The task span (current: the instrumentation opened it) gets the job's ids."""
    from opentelemetry import trace

    from app.jobs.broker import REQUEST_ID_HEADER
    from app.tasklog import task_fields

    span = trace.get_current_span()
    if task is None or not span.is_recording() or not task.request.id:
        return
    request_id = task.request.get(REQUEST_ID_HEADER)
    if request_id:
        span.set_attribute(REQUEST_ID_ATTRIBUTE, str(request_id))
    fields = task_fields(task.name, task.request.id)
    for name in ("job_id", "collector"):
        if name in fields:
            span.set_attribute(f"collectq.{name}", fields[name])


def init_worker_tracing(celery: Celery, pool_cls: Any = None) -> bool:
    """A worker node's tracing, in the process that runs its tasks.

    `pool_cls` given (``worker_init``, the main process): only a threads/solo pool runs
    tasks here; a prefork pool's processes call this without it (``worker_process_init``).
    """
    if pool_cls is not None:
        from celery.concurrency import get_implementation

        if get_implementation(pool_cls).__module__ == "celery.concurrency.prefork":
            return False
    return init_tracing(worker_service(celery.amqp.queues.consume_from or ()))
