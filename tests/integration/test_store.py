"""Job store transitions against the real Redis: forward-only, idempotent, decided once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.jobs.store import JobStore

pytestmark = pytest.mark.integration


def _env(store: JobStore, job: str) -> dict[str, Any]:
    env = store.get(job)
    assert env is not None
    return env


def _job(store: JobStore, collectors: list[str]) -> str:
    return store.create(owner="o", target="a.org", collectors=collectors, options={}, labels={})[
        "id"
    ]


def test_redelivered_result_is_not_recorded_twice(store: JobStore) -> None:
    job = _job(store, ["a"])
    assert store.record(job, "a", "running", 1, {}).outcome == "ok"
    first = store.record(job, "a", "succeeded", 1, {"data": {"n": 1}})
    again = store.record(job, "a", "succeeded", 1, {"data": {"n": 2}})
    assert (first.outcome, first.job_status) == ("final", "succeeded")
    assert again.outcome == "stale"
    assert _env(store, job)["results"]["a"]["data"] == {"n": 1}


def test_finished_collector_never_moves_backwards(store: JobStore) -> None:
    job = _job(store, ["a", "b"])
    store.record(job, "a", "failed", 1, {})
    assert store.record(job, "a", "running", 2, {}).outcome == "stale"
    assert _env(store, job)["results"]["a"]["status"] == "failed"
    assert _env(store, job)["status"] == "running"


def test_older_attempt_cannot_overwrite_newer(store: JobStore) -> None:
    job = _job(store, ["a"])
    store.record(job, "a", "retrying", 2, {})
    assert store.record(job, "a", "running", 1, {}).outcome == "stale"


def test_final_state_is_decided_exactly_once_under_concurrency(store: JobStore) -> None:
    names = [f"c{i}" for i in range(16)]
    job = _job(store, names)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda n: (
                    store.record(job, n, "succeeded" if n != "c3" else "failed", 1, {}).outcome
                ),
                names,
            )
        )
    assert outcomes.count("final") == 1
    assert _env(store, job)["status"] == "partial"


def test_cancel_stops_unfinished_collectors_only(store: JobStore) -> None:
    job = _job(store, ["a", "b"])
    store.record(job, "a", "succeeded", 1, {"data": {}})
    assert store.cancel(job) == "cancelled"
    env = _env(store, job)
    assert env["results"]["a"]["status"] == "succeeded"
    assert env["results"]["b"]["status"] == "cancelled"
    assert store.record(job, "b", "succeeded", 1, {}).outcome == "stale"
    assert store.cancel(job) == "cancelled"


def test_finished_job_gets_the_retention_ttl_and_artifacts_are_raw(store: JobStore) -> None:
    job = _job(store, ["a"])
    store.artifacts.put(job, "x.bin", "application/octet-stream", b"\x00\xff\x10")
    store.record(job, "a", "succeeded", 1, {})
    assert 0 < store.redis.ttl(store.keys.job(job)) <= 600
    assert store.artifacts.get(job, "x.bin") == (b"\x00\xff\x10", "application/octet-stream")


def test_unknown_job_records_nothing(store: JobStore) -> None:
    assert store.record("j_nope", "a", "succeeded", 1, {}).outcome == "missing"
    assert store.get("j_nope") is None


@pytest.mark.parametrize(
    ("extra", "outcome"),
    [
        ({}, "final"),
        ({"callback_url": "http://127.0.0.1:9/hook"}, "announce"),
        ({"schedule_id": "s_1"}, "announce"),
    ],
)
def test_only_a_job_whose_end_has_work_enters_the_finished_outbox(
    store: JobStore, extra: dict[str, Any], outcome: str
) -> None:
    """A callback's deliveries or a schedule's bookkeeping need the finalizer; a plain
    job's end has nothing to do, so it is neither queued for it nor announced."""
    job = store.create(owner="o", target="a.org", collectors=["a"], options={}, labels={}, **extra)[
        "id"
    ]
    done = store.record(job, "a", "succeeded", 1, {"data": {}})
    assert (done.outcome, done.job_status, done.recorded) == (outcome, "succeeded", True)
    in_outbox = store.redis.zscore(store.keys.finished, job) is not None
    assert in_outbox == (outcome == "announce")
    # a cancel (rare) is always announced, whatever the job carries
    cancelled = _job(store, ["a"])
    assert store.cancel(cancelled) == "cancelled"
    assert store.redis.zscore(store.keys.finished, cancelled) is not None
