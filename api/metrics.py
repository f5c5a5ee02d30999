"""Request metrics of the API: count and latency by route template, method and status.

The route is the Flask rule (``/v1/jobs/<job_id>``), never the path: a label per job id
or per scanner's URL would grow without bound. Served on the metrics listener of the
gunicorn master (`app.gunicorn_conf`), never on the API's own port.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from app.metrics import UNMATCHED_ROUTE, observe_request

__all__ = ["init_metrics"]


def init_metrics(app: Flask) -> None:
    """Time every request from the first before-request hook to its response."""

    def start() -> None:
        g.metrics_t0 = time.perf_counter()

    def done(response: Response) -> Response:
        rule = request.url_rule
        t0: float | None = g.get("metrics_t0")
        observe_request(
            rule.rule if rule is not None else UNMATCHED_ROUTE,
            request.method,
            response.status_code,
            None if t0 is None else time.perf_counter() - t0,
        )
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.after_request(done)
