"""Faults of the target: a host that keeps failing (breaker) or fails a few times (backoff)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from werkzeug import Request, Response

from app.jobs.breaker import breaker_key
from tests.conftest import wait_for
from tests.faults.conftest import accepted, job, tally, wait_all_terminal

pytestmark = pytest.mark.faults


class FailingTarget:
    """Answers 503 to the first `failures` requests, then 200; remembers when each came."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.hits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.hits.append(time.monotonic())
            n = len(self.hits)
        if n <= self.failures:
            return Response("down", status=503)
        return Response("up", status=200)


def test_breaker_opens_fails_fast_half_opens_and_closes(
    fault_app, cluster, fault_env, httpserver, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    settings = {
        "COLLECTQ_BREAKER_FAIL_MAX": "3",
        "COLLECTQ_BREAKER_RESET_TIMEOUT": "2",
        "COLLECTQ_MAX_RETRIES": "20",  # fast-failed attempts count too: room to spare
        "COLLECTQ_RETRY_BACKOFF_BASE": "0.2",
        "COLLECTQ_RETRY_BACKOFF_MAX": "1",
    }
    target = FailingTarget(failures=5)
    httpserver.expect_request("/flaky").respond_with_handler(target)
    app = fault_app(**settings)
    client, breakers = app.test_client(), app.extensions["collectq"].breakers
    cluster.worker("collect.http", **settings)
    body = {"target": httpserver.url_for("/flaky"), "collectors": ["http"]}
    key = breaker_key(body["target"])  # the origin: http://localhost:<port>
    ids = [accepted(client, body) for _ in range(8)]
    t0 = time.monotonic()
    # straight from Redis (what /v1/status shows, without its worker inspection round trip)
    seen_open = wait_for(
        lambda: breakers.states().get(key, {}).get("state") == "open",
        timeout=30,
        interval=0.02,
    )
    opened_with = len(target.hits)
    wait_all_terminal(url, ids, timeout=120)
    recover = time.monotonic() - t0
    breaker = client.get("/v1/status").json["breakers"][key]
    breakers.redis.connection_pool.disconnect()
    attempts = sum(json.loads(job(url, i)["r:http"])["attempts"] for i in ids)
    t = tally(url, ids)
    fault_report(
        t.row(
            "breaker open/half-open/close",
            recover,
            host_calls=len(target.hits),
            collector_attempts=attempts,
            failed_fast=attempts - len(target.hits),
        )
    )
    assert seen_open
    assert all(job(url, i)["status"] == "succeeded" for i in ids)
    assert breaker["state"] == "closed"
    # 5 failures, then one probe that succeeds; while open, the host saw (almost) nothing:
    # every other attempt failed fast without a request.
    assert opened_with <= 3 + 4  # fail_max, plus calls already in flight (4 threads)
    # every request was needed: the 5 failures and one success per job, nothing more ...
    assert len(target.hits) == 5 + len(ids)
    # ... while many attempts failed fast, without a request (no breaker: attempts == hits)
    assert attempts > len(target.hits) + 5
    assert (t.lost, t.duplicated) == (0, 0)


def test_503_four_times_then_200_succeeds_on_attempt_5_within_backoff(
    fault_app, cluster, fault_env, httpserver, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    base, cap = 0.2, 1.0
    settings = {
        "COLLECTQ_BREAKER_FAIL_MAX": "0",  # backoff alone, no breaker in the way
        "COLLECTQ_MAX_RETRIES": "5",
        "COLLECTQ_RETRY_BACKOFF_BASE": str(base),
        "COLLECTQ_RETRY_BACKOFF_MAX": str(cap),
    }
    target = FailingTarget(failures=4)
    httpserver.expect_request("/later").respond_with_handler(target)
    client = fault_app(**settings).test_client()
    cluster.worker("collect.http", **settings)
    job_id = accepted(client, {"target": httpserver.url_for("/later"), "collectors": ["http"]})
    t0 = time.monotonic()
    wait_all_terminal(url, [job_id], timeout=60)
    recover = time.monotonic() - t0
    result = json.loads(job(url, job_id)["r:http"])
    gaps = [b - a for a, b in zip(target.hits, target.hits[1:], strict=False)]
    t = tally(url, [job_id])
    fault_report(t.row("503 x4 then 200", recover, delays_s=[round(g, 3) for g in gaps]))
    assert job(url, job_id)["status"] == "succeeded"
    assert result["attempts"] == 5
    assert result["data"]["status_code"] == 200
    assert len(target.hits) == 5
    for attempt, gap in enumerate(gaps, start=1):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        # full jitter: uniform in [0, ceiling]; plus the time a retry takes to go around
        assert 0 <= gap <= ceiling + 0.75, (attempt, gap, ceiling)
    assert (t.lost, t.duplicated) == (0, 0)
