"""The Prometheus metrics of collectq: every metric object, defined once, and how they are fed.

Names and labels are a contract (README "Metrics"; dashboards and alert rules use them).
No label ever carries an owner, an API key, a target or a job id.

API and worker processes run in prometheus_client's multiprocess mode: each process writes
its samples to files under ``PROMETHEUS_MULTIPROC_DIR`` (set by ``collectq api``/``worker``
before the server starts, `app.metrics_serve`) and one listener per server sums them. The
gauges computed from Redis and the broker at scrape time are in `app.metrics_scrape`.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from app.jobs.context import JobObserver
from app.schedules.outcomes import OUTCOMES

__all__ = [
    "COLLECTOR_ATTEMPTS",
    "COLLECTOR_DURATION",
    "COLLECTOR_ERRORS",
    "COLLECTOR_RETRIES",
    "EVENT_STREAMS",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "JOBS_FINISHED",
    "JOBS_SUBMITTED",
    "QUEUE_WAIT",
    "SCHEDULE_CHANGES",
    "SCHEDULE_FIRES",
    "SCHEDULE_LAG",
    "UNMATCHED_ROUTE",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_DURATION",
    "MetricsObserver",
    "count_webhook_delivery",
    "observe_request",
    "observe_webhook_attempt",
]

# A request no route matched (404s, scanners): one label value, whatever the path.
UNMATCHED_ROUTE = "unmatched"

# API ---------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "collectq_http_requests",
    "API requests by route template, method and status",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "collectq_http_request_duration_seconds",
    "API request latency by route template and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Open SSE streams (GET /v1/jobs/{id}/events, /v1/events): summed over the live API
# processes (a dead process's streams are gone, its file with it).
EVENT_STREAMS = Gauge(
    "collectq_event_streams", "Open event streams (SSE)", multiprocess_mode="livesum"
)
JOBS_SUBMITTED = Counter(
    "collectq_jobs_submitted", "collectors of accepted jobs (one per collector)", ["collector"]
)

# workers -----------------------------------------------------------------------------
COLLECTOR_ATTEMPTS = Counter(
    "collectq_collector_attempts", "runs of a collector begun by a delivery", ["collector"]
)
COLLECTOR_RETRIES = Counter(
    "collectq_collector_retries", "retries scheduled after a retryable error", ["collector"]
)
BREAKER_TRANSITIONS = Counter(
    "collectq_breaker_transitions",
    "circuit breakers changing state, by collector and the state entered (open, half_open, "
    "closed); counted by the worker whose call moved it",
    ["collector", "state"],
)
COLLECTOR_DURATION = Histogram(
    "collectq_collector_duration_seconds",
    "collector run time by outcome (succeeded, failed, retrying)",
    ["collector", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
COLLECTOR_ERRORS = Counter(
    "collectq_collector_errors",
    "runs that ended in an error, and collectors failed without a run, by error type",
    ["collector", "error"],
)
JOBS_FINISHED = Counter(
    "collectq_jobs_finished",
    "collectors reaching a terminal status (succeeded, failed, cancelled, expired)",
    ["collector", "status"],
)
QUEUE_WAIT = Histogram(
    "collectq_queue_wait_seconds",
    "time a message waited in its queue: publish (or a retry's ETA) to task start",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)

# schedules ---------------------------------------------------------------------------
SCHEDULE_FIRES = Counter(
    "collectq_schedule_fires",
    "schedule ticks by outcome (fired, skipped_concurrency, skipped_window, missed)",
    ["outcome"],
)
SCHEDULE_LAG = Histogram(
    "collectq_schedule_lag_seconds",
    "a scheduled job's submit time minus its due time (jitter excluded)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
for _outcome in OUTCOMES:  # every outcome exposed from the start, so rate() sees its first
    SCHEDULE_FIRES.labels(_outcome)

# webhooks (app.webhooks.deliver) -----------------------------------------------------
WEBHOOK_DELIVERIES = Counter(
    "collectq_webhook_deliveries",
    "webhook delivery attempts by event and outcome (delivered, retrying, failed: given up)",
    ["event", "outcome"],
)
WEBHOOK_ATTEMPTS = Counter(
    "collectq_webhook_attempts", "webhook requests sent (every attempt) by event", ["event"]
)
WEBHOOK_DURATION = Histogram(
    "collectq_webhook_duration_seconds",
    "time of one webhook attempt: connect, send, the receiver's answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def observe_webhook_attempt(event: str, seconds: float) -> None:
    WEBHOOK_ATTEMPTS.labels(event).inc()
    WEBHOOK_DURATION.observe(seconds)


def count_breaker_transition(collector: str, state: str) -> None:
    BREAKER_TRANSITIONS.labels(collector, state).inc()


def count_webhook_delivery(event: str, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(event, outcome).inc()


# change detection --------------------------------------------------------------------
SCHEDULE_CHANGES = Counter(
    "collectq_schedule_changes",
    "changes detected between runs of a schedule, by collector (one change may count for "
    "several collectors)",
    ["collector"],
)


def observe_request(route: str, method: str, status: int, seconds: float | None) -> None:
    """One API request answered (`seconds` None when its start was not seen)."""
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    if seconds is not None:
        HTTP_REQUEST_DURATION.labels(route, method).observe(seconds)


class MetricsObserver(JobObserver):
    """The job domain's observer that feeds the metrics above."""

    def __init__(self, collectors: Sequence[str] = ()) -> None:
        # Changes are rare: each collector's series exists from the start at 0, so a
        # dashboard shows "none" rather than "no data" (and a rate over it is 0, not absent).
        for name in collectors:
            SCHEDULE_CHANGES.labels(name)

    def submitted(self, collectors: Sequence[str]) -> None:
        for name in collectors:
            JOBS_SUBMITTED.labels(name).inc()

    def waited(self, queue: str, seconds: float) -> None:
        QUEUE_WAIT.labels(queue).observe(max(0.0, seconds))

    def started(self, collector: str) -> None:
        COLLECTOR_ATTEMPTS.labels(collector).inc()

    def ran(self, collector: str, outcome: str, seconds: float) -> None:
        COLLECTOR_DURATION.labels(collector, outcome).observe(seconds)
        if outcome == "retrying":
            COLLECTOR_RETRIES.labels(collector).inc()

    def errored(self, collector: str, error: str) -> None:
        COLLECTOR_ERRORS.labels(collector, error).inc()

    def finished(self, collector: str, status: str) -> None:
        JOBS_FINISHED.labels(collector, status).inc()
