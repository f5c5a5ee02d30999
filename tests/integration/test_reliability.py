"""Heartbeats, redelivery limit, the reaper and circuit breakers, on the real services."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from kombu import Connection

from app.jobs.breaker import Breakers, host_of
from app.jobs.errors import CircuitOpen
from app.jobs.reaper import last_pass, reap
from collectors.base import InvalidTarget, Result, TargetConnectError
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


def _new(store, collectors=("a",), request_id=None) -> str:
    return store.create(
        owner="o",
        target="a.org",
        collectors=list(collectors),
        options={},
        labels={},
        request_id=request_id,
    )["id"]


@pytest.fixture
def store():
    from app.jobs.store import JobStore

    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield JobStore(client, prefix, ttl=600, queued_grace=60)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def test_a_start_that_finds_running_counts_as_a_redelivery(store) -> None:
    job = _new(store)
    outcomes = [store.begin(job, "a", heartbeat_timeout=5, max_redeliveries=2) for _ in range(4)]
    assert [(b.outcome, b.attempt) for b in outcomes] == [
        ("ok", 1),
        ("ok", 2),
        ("ok", 3),
        ("limit", 4),
    ]
    # a clean retry (retrying → running) is not a redelivery
    other = _new(store)
    store.begin(other, "a", heartbeat_timeout=5, max_redeliveries=0)
    store.record(other, "a", "retrying", 1, {}, watch_in=1)
    assert store.begin(other, "a", heartbeat_timeout=5, max_redeliveries=0).outcome == "ok"


def test_heartbeat_keeps_watch_until_finished(store) -> None:
    job = _new(store)
    store.begin(job, "a", heartbeat_timeout=5, max_redeliveries=3)
    assert store.overdue(time.time()) == []
    assert store.beat(job, "a", 5)
    assert store.overdue(time.time() + 6) == [f"{job}|a"]
    store.record(job, "a", "succeeded", 1, {})
    assert not store.beat(job, "a", 5)  # finished: no longer watched, never re-added
    assert store.overdue(time.time() + 3600) == []
    assert store.redis.hget(store.keys.job(job), "t:a") == b"1"
    assert store.record(job, "a", "succeeded", 1, {}).outcome == "stale"
    assert store.redis.hget(store.keys.job(job), "t:a") == b"1"


def test_a_start_reads_what_the_run_needs(store) -> None:
    job = _new(store)
    begin = store.begin(job, "a", heartbeat_timeout=5, max_redeliveries=3)
    assert begin.spec is not None
    assert (begin.spec.target, begin.spec.owner, begin.spec.attempt) == ("a.org", "o", 1)
    read = store.spec(job, "a")  # the separate read it replaces, owner aside
    assert read is not None
    assert dataclasses.replace(read, owner="o") == begin.spec
    store.record(job, "a", "succeeded", 1, {})
    assert store.begin(job, "a", heartbeat_timeout=5, max_redeliveries=3).spec is None  # done


def test_one_process_beats_all_its_running_collectors(store) -> None:
    from app.jobs.heartbeat import heartbeat

    jobs = [_new(store) for _ in range(3)]
    for job in jobs:
        store.begin(job, "a", heartbeat_timeout=1, max_redeliveries=3)
    with ExitStack() as stack:
        gone = [
            stack.enter_context(heartbeat(store, j, "a", interval=0.1, timeout=1, max_runtime=30))
            for j in jobs
        ]
        store.record(jobs[0], "a", "succeeded", 1, {})  # finished by another delivery
        deadline = time.monotonic() + 5
        while not gone[0].is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone[0].is_set()
        time.sleep(1.5)  # past the start's deadline: only the beats keep the others watched
        assert store.overdue(time.time()) == []
        assert not gone[1].is_set()
        assert not gone[2].is_set()
    # the block ended: no more beats, so both lapse after their timeout
    assert sorted(store.overdue(time.time() + 2)) == sorted(f"{j}|a" for j in jobs[1:])


def test_cancel_and_expire_end_the_watch(store) -> None:
    cancelled, expired = _new(store, ["a", "b"]), _new(store)
    store.record(cancelled, "a", "succeeded", 1, {})
    assert store.cancel(cancelled) == "cancelled"
    assert store.expire(expired, "too old") == "expired"
    assert store.overdue(time.time() + 3600) == []
    env = store.get(expired)
    assert env["status"] == "expired"
    assert env["results"]["a"]["status"] == "skipped"
    assert env["results"]["a"]["error"]["type"] == "expired"
    assert store.get(cancelled)["results"]["a"]["status"] == "succeeded"  # finished stays


def _overdue_now(store, job: str, collector: str) -> None:
    store.redis.zadd(store.keys.watch, {f"{job}|{collector}": 0})


def _declare_queues(app) -> None:
    celery = app.extensions["celery"]
    with Connection(celery.conf.broker_url) as conn:
        for queue in celery.conf.task_queues:
            queue(conn.default_channel).declare()
            queue(conn.default_channel).purge()


def test_reaper_expires_a_job_past_its_deadline(make_app) -> None:
    app = make_app(COLLECTQ_JOB_DEADLINE="10")
    rt, celery = app.extensions["collectq"], app.extensions["celery"]
    job = _new(rt.store, ["noop"])
    rt.store.redis.hset(rt.store.keys.job(job), "created_at", "2020-01-01T00:00:00.000Z")
    _overdue_now(rt.store, job, "noop")
    report = reap(rt, celery)
    assert report.expired == [job]
    assert rt.store.get(job)["status"] == "expired"


def test_reaper_requeues_a_vanished_message_then_gives_up_as_lost(make_app) -> None:
    app = make_app(COLLECTQ_REAP_MAX_REQUEUES="1")
    rt, celery = app.extensions["collectq"], app.extensions["celery"]
    _declare_queues(app)
    # a record whose message never reached the broker
    job = _new(rt.store, ["noop"], request_id="req-lost-1")
    _overdue_now(rt.store, job, "noop")

    first = reap(rt, celery)
    assert first.requeued == [f"{job}|noop"]
    with Connection(celery.conf.broker_url) as conn:
        channel: Any = conn.default_channel  # an AMQP channel; the stubs know only StdChannel
        depth = channel.queue_declare(queue="collect.noop", passive=True)
        assert depth.message_count == 1  # the requeued message
        # it names the request and the owner again (the worker's log lines carry them)
        message = channel.basic_get("collect.noop", no_ack=False)
        headers = message.properties["application_headers"]
        assert (headers["x_request_id"], headers["x_owner"]) == ("req-lost-1", "o")
        channel.basic_reject(message.delivery_tag, requeue=True)

    _overdue_now(rt.store, job, "noop")
    assert reap(rt, celery).postponed == 1  # its message is waiting: leave it

    _declare_queues(app)  # the message vanishes again
    _overdue_now(rt.store, job, "noop")
    last = reap(rt, celery)
    assert last.failed == [f"{job}|noop"]
    env = rt.store.get(job)
    assert env["status"] == "failed"
    assert env["results"]["noop"]["error"]["type"] == "lost"


def test_reaper_leaves_a_collector_with_a_live_heartbeat_alone(make_app) -> None:
    app = make_app()
    rt, celery = app.extensions["collectq"], app.extensions["celery"]
    job = _new(rt.store, ["noop"])
    rt.store.begin(job, "noop", heartbeat_timeout=30, max_redeliveries=3)
    report = reap(rt, celery)
    assert (report.requeued, report.failed, report.postponed) == ([], [], 0)
    assert rt.store.get(job)["results"]["noop"]["status"] == "running"


@pytest.fixture
def breakers():
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    b = Breakers(REDIS_URL, prefix, fail_max=2, reset_timeout=1)
    yield b
    keys = list(b.redis.scan_iter(f"{prefix}*"))
    if keys:
        b.redis.delete(*keys)


def test_breaker_opens_fails_fast_half_opens_and_closes(breakers) -> None:
    calls: list[str] = []

    def failing():
        calls.append("x")
        return TargetConnectError("refused")

    def ok():
        calls.append("ok")
        return Result(data={})

    assert isinstance(breakers.call("h.example", failing), TargetConnectError)
    assert isinstance(breakers.call("h.example", failing), TargetConnectError)  # trips
    fast = breakers.call("h.example", failing)
    assert isinstance(fast, CircuitOpen)
    assert fast.retryable
    assert fast.retry_after is not None
    assert 0 <= fast.retry_after <= 1
    assert fast.to_dict()["half_open_at"].endswith("Z")
    assert calls == ["x", "x"]  # the open breaker made no call
    assert breakers.states()["h.example"]["state"] == "open"
    # another worker (another instance, same Redis) sees the same state
    other = Breakers(REDIS_URL, breakers._names.prefix, fail_max=2, reset_timeout=1)
    assert isinstance(other.call("h.example", ok), CircuitOpen)
    time.sleep(2.1)
    assert isinstance(breakers.call("h.example", ok), Result)  # the probe
    assert breakers.states()["h.example"] == {"state": "closed", "consecutive_failures": 0}


def test_breaker_counts_consecutive_failures_only(breakers) -> None:
    def failing():
        return TargetConnectError("refused")

    def ok():
        return Result(data={})

    assert isinstance(breakers.call("h3", failing), TargetConnectError)
    assert breakers.states()["h3"]["consecutive_failures"] == 1
    assert isinstance(breakers.call("h3", ok), Result)  # resets the count
    assert breakers.states()["h3"]["consecutive_failures"] == 0
    assert isinstance(breakers.call("h3", failing), TargetConnectError)
    assert breakers.states()["h3"] == {"state": "closed", "consecutive_failures": 1}
    assert isinstance(breakers.call("h3", failing), TargetConnectError)  # trips
    assert breakers.states()["h3"]["state"] == "open"


def test_breaker_ignores_answers_that_are_not_transient(breakers) -> None:
    for _ in range(5):
        assert isinstance(breakers.call("h2", lambda: InvalidTarget("no")), InvalidTarget)
    assert breakers.states()["h2"]["state"] == "closed"


def test_breaker_is_off_with_fail_max_0() -> None:
    b = Breakers(REDIS_URL, "unused:", fail_max=0, reset_timeout=1)
    for _ in range(5):
        assert isinstance(b.call("h", lambda: TargetConnectError("x")), TargetConnectError)
    assert b._redis is None  # never touched Redis


def test_breaker_keys_expire(breakers) -> None:
    breakers.call("h3", lambda: TargetConnectError("x"))
    for key in breakers.redis.scan_iter(f"{breakers._names.breaker_namespace('h3')}:*"):
        assert 0 < breakers.redis.ttl(key) <= 24 * 3600


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("https://Example.ORG:8443/x", "example.org"),
        ("example.org", "example.org"),
        ("http://[::1]:80/", "::1"),
        ("example.org:53", "example.org"),
    ],
)
def test_host_of(target: str, host: str) -> None:
    assert host_of(target) == host


def test_status_shows_breakers(make_app) -> None:
    app = make_app()
    rt = app.extensions["collectq"]
    for _ in range(5):
        rt.breakers.call("down.example", lambda: TargetConnectError("x"))
    status = app.test_client().get("/v1/status").json
    assert status["breakers"]["down.example"]["state"] == "open"
    assert "half_open_at" in status["breakers"]["down.example"]
    assert json.dumps(status)  # serialisable as is


def test_status_shows_the_reapers_last_pass(make_app) -> None:
    app = make_app(COLLECTQ_REAP_INTERVAL="1")
    rt, celery = app.extensions["collectq"], app.extensions["celery"]
    client = app.test_client()
    assert client.get("/v1/status").json["reaper"] == {"last_pass_ago_s": None, "on_time": False}
    _declare_queues(app)
    job = _new(rt.store, ["noop"])
    _overdue_now(rt.store, job, "noop")
    reap(rt, celery)
    reaper = client.get("/v1/status").json["reaper"]
    assert reaper["on_time"] is True
    assert 0 <= reaper["last_pass_ago_s"] < 5
    assert (reaper["requeued"], reaper["failed"], reaper["expired"]) == (1, 0, 0)
    assert last_pass(rt, now=time.time() + 60)["on_time"] is False  # ticks stopped


def test_host_slots_cap_concurrent_calls_across_instances() -> None:
    import threading

    from app.jobs.errors import HostBusy
    from app.jobs.hostcap import HostSlots

    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    a, b = HostSlots(lambda: client, prefix), HostSlots(lambda: client, prefix)
    inside, peak, busy = [0], [0], []
    lock, start = threading.Lock(), threading.Barrier(5)

    def call(slots: HostSlots) -> None:
        start.wait(10)  # all five try at once
        with slots.slot("tls", "h", cap=2, hold_max=30, wait_max=0.2) as refused:
            if refused is not None:
                busy.append(refused)
                return
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(1.0)  # hold the slot while the others try (and give up)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=call, args=(s,)) for s in (a, b, a, b, a)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2
    assert len(busy) == 3
    assert all(isinstance(x, HostBusy) and x.retryable for x in busy)
    assert client.zcard(f"{prefix}hc:tls:h") == 0  # every slot given back
    with a.slot("tls", "h", cap=2, hold_max=30, wait_max=0) as refused:  # free again
        assert refused is None
    with a.slot("http", "h", cap=0, hold_max=30, wait_max=0) as refused:  # cap 0: no cap
        assert refused is None


def test_host_slot_of_a_dead_holder_expires() -> None:
    from app.jobs.hostcap import HostSlots

    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    slots = HostSlots(lambda: client, prefix)
    client.zadd(f"{prefix}hc:tls:h", {"dead-worker": time.time() - 1})  # its hold ran out
    with slots.slot("tls", "h", cap=1, hold_max=30, wait_max=0) as refused:
        assert refused is None
    client.delete(f"{prefix}hc:tls:h")


@pytest.fixture
def flaky_runtime():
    """A runtime with the test plugins, breakers on (2 failures open one), real Redis."""
    from app.runtime import build_runtime
    from app.settings import load_settings
    from tests.plugins import PLUGINS

    settings = load_settings(
        redis_url=REDIS_URL,
        redis_prefix=f"t{uuid.uuid4().hex[:10]}:",
        plugins=tuple(PLUGINS.split(",")),
        breaker_fail_max=2,
        breaker_reset_timeout=60,
        max_retries=5,
        retry_backoff_base=0.01,
        retry_backoff_max=0.05,
    )
    rt = build_runtime(settings)
    yield rt
    keys = list(rt.redis.scan_iter(f"{settings.redis_prefix}*"))
    if keys:
        rt.redis.delete(*keys)
    rt.registry.close()


def _flaky_job(rt, owner: str, target: str, fail_times: int) -> str:
    job: str = rt.store.create(
        owner=owner,
        target=target,
        collectors=["flaky"],
        options={"flaky": {"fail_times": fail_times}},
        labels={},
    )["id"]
    return job


def test_one_tenants_failures_on_one_port_do_not_open_the_breaker_of_another_port(
    flaky_runtime,
) -> None:
    """Breaker poisoning (issue 11, item 6): tenant A's jobs to a filtered port of a
    shared host must not fail tenant B's jobs to that host's working port fast."""
    from app.jobs.collect import Retry, collect

    rt = flaky_runtime
    for _ in range(2):  # tenant A: transient failures on :8443 open that breaker
        retry = collect(rt, _flaky_job(rt, "tenant-a", "https://shared.example:8443/", 9), "flaky")
        assert isinstance(retry, Retry)
        assert retry.error.type == "connect_error"
    blocked = collect(rt, _flaky_job(rt, "tenant-a", "https://shared.example:8443/x", 0), "flaky")
    assert isinstance(blocked, Retry)
    assert blocked.error.type == "circuit_open"  # the same origin: failed fast
    # tenant B: the same host, its default https port (443) and plain http: not affected
    for target in ("https://shared.example/", "https://SHARED.example:443/y", "shared.example"):
        job = _flaky_job(rt, "tenant-b", target, 0)
        assert collect(rt, job, "flaky") == "final", target
        assert rt.store.get(job)["results"]["flaky"]["status"] == "succeeded"
    job = _flaky_job(rt, "tenant-b", "http://shared.example/", 0)
    assert collect(rt, job, "flaky") == "final"
    states = rt.breakers.states()  # the flaky collector's breakers (its own policy)
    assert states["flaky:https://shared.example:8443"]["state"] == "open"
    assert states["flaky:https://shared.example:443"]["state"] == "closed"
    assert states["flaky:http://shared.example:80"]["state"] == "closed"
    # every key stays inside the breaker namespace of the prefix
    names = {k.decode() for k in rt.redis.scan_iter(f"{rt.settings.redis_prefix}*")}
    cb = {n for n in names if n.startswith(f"{rt.settings.redis_prefix}cb:")}
    assert f"{rt.settings.redis_prefix}cb:flaky:https://shared.example:8443:pybreaker:state" in cb


@pytest.mark.parametrize(
    ("target", "collector", "options", "key"),
    [
        ("https://Example.ORG/x", "http", {}, "https://example.org:443"),
        ("http://example.org/", "http", {}, "http://example.org:80"),
        # a page has thresholds of its own (its policy): a breaker of its own
        ("https://example.org:8443/x", "screenshot", {}, "screenshot:https://example.org:8443"),
        ("example.org", "http", {}, "https://example.org:443"),
        ("http://[::1]:8080/", "http", {}, "http://[::1]:8080"),
        ("http://[::1]/", "http", {}, "http://[::1]:80"),
        ("example.org", "tls", {}, "tls://example.org:443"),
        ("example.org", "tls", {"port": 8443}, "tls://example.org:8443"),
        ("https://example.org:9443/", "tls", {}, "tls://example.org:9443"),
        ("[2001:db8::1]", "tls", {"port": 993}, "tls://[2001:db8::1]:993"),
        ("Example.org", "dns", {}, "dns://default:53/example.org"),
        ("https://www.example.org/x", "dns", {}, "dns://default:53/www.example.org"),
        (
            "example.org.",
            "dns",
            {"nameserver": "192.0.2.53", "port": 5353},
            "dns://192.0.2.53:5353/example.org",
        ),
        (
            "example.org",
            "dns",
            {"nameserver": "2001:db8::53"},
            "dns://[2001:db8::53]:53/example.org",
        ),
        ("", "http", {}, ""),
    ],
)
def test_breaker_key(target: str, collector: str, options: dict, key: str) -> None:
    from app.jobs.breaker import breaker_key

    assert breaker_key(target, collector, options) == key
