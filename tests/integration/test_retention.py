"""Retention: jobs and artifacts expire after JOB_TTL; a byte budget per owner."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
import redis

from app.jobs.store import JobStore, ListFilter
from tests.conftest import REDIS_URL, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix():
    p = f"t{uuid.uuid4().hex[:10]}:"
    yield p
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{p}*"))
    if keys:
        client.delete(*keys)


def _store(prefix: str, ttl: int) -> JobStore:
    return JobStore(redis.Redis.from_url(REDIS_URL), prefix, ttl=ttl)


def _job(store: JobStore, owner: str = "alice") -> str:
    return store.create(owner=owner, target="a.org", collectors=["a"], options={}, labels={})["id"]


def test_artifact_budget_evicts_the_owners_oldest(prefix) -> None:
    store = _store(prefix, 600)
    jobs = [_job(store) for _ in range(3)]
    other = _job(store, owner="bob")
    store.artifacts.put(other, "b", "text/plain", b"b" * 900, budget=1000)
    results = [store.artifacts.put(j, "x", "text/plain", b"x" * 400, budget=1000) for j in jobs]
    assert results == [(True, 0), (True, 0), (True, 1)]
    assert store.artifacts.get(jobs[0], "x") is None  # evicted
    assert store.artifacts.get(jobs[2], "x") == (b"x" * 400, "text/plain")
    assert store.artifacts.bytes_held("alice") == 800
    assert store.artifacts.get(other, "b") is not None  # another owner's budget
    assert store.artifacts.put(jobs[1], "huge", "text/plain", b"h" * 1001, budget=1000) == (
        False,
        0,
    )
    assert store.artifacts.get(jobs[1], "huge") is None
    # storing under the same name again replaces, it does not count twice
    store.artifacts.put(jobs[2], "x", "text/plain", b"y" * 100, budget=1000)
    assert store.artifacts.bytes_held("alice") == 500


def test_expired_artifacts_leave_the_budget(prefix) -> None:
    short = _store(prefix, 1)
    job = _job(short)
    short.artifacts.put(job, "x", "text/plain", b"x" * 900, budget=1000)
    wait_for(lambda: short.artifacts.get(job, "x") is None, timeout=10, interval=0.1)
    later = _job(short)
    assert short.artifacts.put(later, "y", "text/plain", b"y" * 900, budget=1000) == (True, 0)
    assert short.artifacts.bytes_held("alice") == 900


def test_listing_stays_correct_after_expiry(prefix) -> None:
    short, long = _store(prefix, 1), _store(prefix, 600)
    gone = [_job(short) for _ in range(3)]
    wait_for(lambda: all(short.get(j) is None for j in gone), timeout=10, interval=0.1)
    kept = [_job(long) for _ in range(2)]
    items, cursor = long.list("alice", ListFilter(), limit=10, cursor=None)
    assert [e["id"] for e in items] == list(reversed(kept))
    assert cursor is None
    index = cast(list[bytes], long.redis.zrange(f"{prefix}idx:alice", 0, -1))
    assert sorted(i.decode() for i in index) == sorted(kept)  # expired ids left the index


def test_a_job_not_ended_keeps_its_record_past_job_ttl_until_it_ends(prefix) -> None:
    """However late the reaper ends a job at its deadline, the record is still there to
    end: JOB_DEADLINE + JOB_TTL while it runs, JOB_TTL once it ended."""
    store = JobStore(redis.Redis.from_url(REDIS_URL), prefix, ttl=100, deadline=60)
    job = _job(store)
    key = store.keys.job(job)
    assert 150 < store.redis.ttl(key) <= 160
    assert store.expire(job, "not finished within 60s") == "expired"
    assert 90 < store.redis.ttl(key) <= 100
    # and without a deadline given, as long as the longest one allowed (JOB_TTL)
    assert 190 < store.redis.ttl(store.keys.job(_job(_store(prefix, 100)))) <= 200


def test_a_collector_that_starts_late_finds_its_record_kept_from_its_start(prefix) -> None:
    store = JobStore(redis.Redis.from_url(REDIS_URL), prefix, ttl=100, deadline=60)
    job = _job(store)
    key = store.keys.job(job)
    store.redis.expire(key, 5)  # as if it had waited in the queue nearly that long
    assert store.begin(job, "a", heartbeat_timeout=30, max_redeliveries=3).outcome == "ok"
    assert 150 < store.redis.ttl(key) <= 160
