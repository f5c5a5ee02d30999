"""Sentry error tracking: on only when ``COLLECTQ_SENTRY_DSN`` is set.

What reaches Sentry: the API's unexpected errors (its catch-all handler logs them with
the traceback, and Sentry's logging integration turns an ERROR record into an event), a
collector that crashed (`collectors.runner` logs it the same way), a task that raised
(Celery integration) — each tagged with the request id and, in the worker, the job id
and the collector; release ``collectq@<version>``, environment the COLLECTQ_ENV profile.

What never does: request bodies (targets, options, header values of a job), cookies,
frame-local variables, and every secret the scrubber (`app.scrub`) recognises wherever it stands in
the event (breadcrumbs included): API keys ``cq_…``, JWTs, ``Bearer``/``Basic``
credentials, URL userinfo (``scheme://user:***@host``), query or ``key=value`` parameters
named like a password/token/secret/key/signature, and the values of the Authorization,
Proxy-Authorization, X-API-Key, Cookie and Set-Cookie headers.

Init per process: `create_app` (API, worker's main process, beat) and each prefork pool
process after the fork (`app.worker`), where the client gets its own transport thread.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from app.logcontext import current
from app.scrub import scrub_text
from app.settings import Settings

__all__ = ["FILTERED", "init_error_tracking", "scrub", "scrub_event"]

FILTERED = "[Filtered]"
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"}
)
# The log context's fields an event is tagged with (the owner is not sent to Sentry).
TAGGED_FIELDS = ("request_id", "job_id", "task_id", "collector")
_tagging: list[bool] = []  # the tagging processor is on the (process-global) scope


def scrub(value: Any) -> Any:
    """Scrub every string in a JSON-like value (dicts, lists), in place where it can."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = scrub(item)
    elif isinstance(value, list):
        value[:] = [scrub(item) for item in value]
    elif isinstance(value, tuple):
        return tuple(scrub(item) for item in value)
    return value


def scrub_event(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """Sentry's ``before_send``: drop what may carry tenant data, then scrub every string."""
    request = event.get("request")
    if isinstance(request, dict):
        for part in ("data", "cookies", "env"):
            request.pop(part, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            for name in headers:
                if name.lower() in SENSITIVE_HEADERS:
                    headers[name] = FILTERED
    scrubbed: dict[str, Any] = scrub(event)
    return scrubbed


def _scrub_breadcrumb(crumb: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    data = crumb.get("data")
    if isinstance(data, dict):  # an outbound HTTP call's query: whatever the tenant put there
        for part in ("http.query", "http.fragment"):
            data.pop(part, None)
    scrubbed: dict[str, Any] = scrub(crumb)
    return scrubbed


def _correlation_tags(event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
    """Tag the event with the request id and the job's ids: the log context's fields,
    bound per API request (`api.requests`) and per task (`app.tasklog`)."""
    tags = event.setdefault("tags", {})
    context = current()
    for name in TAGGED_FIELDS:
        if context.get(name):
            tags.setdefault(name, context[name])
    return event


def init_error_tracking(settings: Settings) -> bool:
    """Start the Sentry client of this process if a DSN is set; return whether it did."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.scrubber import EventScrubber

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        release=f"collectq@{version('collectq')}",
        environment=settings.env,
        send_default_pii=False,
        include_local_variables=False,  # locals hold targets, options, tokens
        max_request_body_size="never",  # job bodies hold targets and header values
        event_scrubber=EventScrubber(recursive=True),
        before_send=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=_scrub_breadcrumb,
        integrations=[FlaskIntegration(), CeleryIntegration()],
    )
    if not _tagging:
        sentry_sdk.get_global_scope().add_event_processor(_correlation_tags)  # type: ignore[arg-type]
        _tagging.append(True)
    return True
