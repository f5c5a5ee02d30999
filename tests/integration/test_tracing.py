"""OpenTelemetry: one job is one trace across the API (gunicorn) and a real worker process.

The processes export with their real OTLP/HTTP exporter to a receiver on loopback
(tests/otlpreceiver.py), which decodes the protobuf requests.
"""

from __future__ import annotations

import uuid
import weakref
from pathlib import Path
from typing import Any

import pytest

from tests.apiprocess import running_api
from tests.conftest import wait_for
from tests.otlpreceiver import ReceivedSpan, otlp_receiver

pytestmark = pytest.mark.integration

SERVER, PRODUCER, CONSUMER = 2, 4, 5  # SpanKind in OTLP's numbering


def one(spans: list[ReceivedSpan], **match: Any) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.name) for s in spans])
    return found[0]


def test_one_job_is_one_trace_from_the_api_request_to_the_collector(
    service_env: dict[str, str], start_worker, tmp_path: Path
) -> None:
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    with otlp_receiver() as receiver:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with running_api({**service_env, **otel}, tmp_path) as api:
            # a prefork pool: each pool process starts its own tracing after the fork
            start_worker("collect.noop", concurrency=1, COLLECTQ_WORKER_POOL="prefork", **otel)
            api.wait_ready()
            body = {"target": "http://127.0.0.1/", "collectors": ["noop"]}
            status, job, headers = api.call(
                "POST", "/v1/jobs", body, headers={"X-Request-ID": request_id}
            )
            assert (status, headers["X-Request-ID"]) == (202, request_id), job
            assert api.wait(job["id"])["status"] == "succeeded"

            def whole_trace() -> list[ReceivedSpan] | None:
                spans = receiver.spans()
                http = [s for s in spans if s.attributes.get("collectq.request_id") == request_id]
                server = [s for s in http if s.kind == SERVER]
                if not server:
                    return None
                trace = [s for s in spans if s.trace_id == server[0].trace_id]
                # the task's span ends after the collector's, so it may come a batch later
                names = {s.name for s in trace}
                return trace if {"collector.run", "run/collect.noop"} <= names else None

            trace = wait_for(whole_trace, timeout=15, interval=0.1)
    job_id = job["id"]

    request = one(trace, kind=SERVER)
    publish = one(trace, kind=PRODUCER, name="apply_async/collect.noop")
    task = one(trace, kind=CONSUMER, name="run/collect.noop")
    collector = one(trace, name="collector.run")
    print(
        f"\ntrace {request.trace_id}: "
        + " → ".join(f"{s.service}:{s.name}" for s in (request, publish, task, collector))
    )
    # HTTP request → publish → task → collector, across two processes
    assert request.parent_id == ""
    assert request.name == "POST /v1/jobs"
    assert request.service == "collectq-api"
    assert publish.parent_id == request.span_id
    assert publish.service == "collectq-api"
    assert task.parent_id == publish.span_id
    assert task.service == "collectq-worker-collect.noop"
    assert collector.parent_id == task.span_id
    assert collector.service == task.service
    assert task.attributes["collectq.request_id"] == request_id
    assert task.attributes["collectq.job_id"] == job_id
    assert collector.attributes["collectq.collector"] == "noop"
    assert collector.attributes["collectq.job_id"] == job_id
    assert collector.attributes["collectq.outcome"] == "succeeded"
    assert collector.attributes["server.address"] == "127.0.0.1"


def test_tracing_off_without_an_endpoint_installs_nothing(make_app) -> None:
    from celery.signals import before_task_publish, task_prerun
    from opentelemetry import trace

    app = make_app()
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    for signal in (before_task_publish, task_prerun):
        modules = [
            getattr(r() if isinstance(r, weakref.ref) else r, "__module__", "")
            for _, r in signal.receivers
        ]
        assert not [m for m in modules if m.startswith(("opentelemetry", "app.tracing"))]
