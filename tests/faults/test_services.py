"""Faults of the services: RabbitMQ restarted, stopped, frozen; Redis restarted, stopped."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kombu import Connection

from tests.conftest import wait_for
from tests.faults.conftest import (
    job_records,
    reaper_ticked_since,
    submit,
    tally,
    wait_all_terminal,
)

pytestmark = pytest.mark.faults

NOOP = {"target": "example.org", "collectors": ["noop"]}
QUICK = {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"sleep": 0.05}}}


def _submit_many(client, n: int, body: dict, out: list[str | None], pause: float = 0.0) -> None:
    """Submit `n` jobs; a refused one (503) is not retried, the client backs off a little."""
    for _ in range(n):
        out.append(submit(client, body))
        time.sleep(pause if out[-1] else 0.1)


def _disrupt_while_submitting(
    fault_app, cluster, url: str, n: int, pause: float, after: int, disrupt
) -> tuple[list[str | None], list[str], float]:
    """Submit `n` quick jobs, call `disrupt()` once `after` answers came back, then wait for
    every accepted job to end. Returns (all answers, accepted ids, seconds to recover)."""
    client = fault_app().test_client()
    cluster.worker("collect.flaky", concurrency="8")
    cluster.maintenance()
    results: list[str | None] = []
    sender = threading.Thread(target=_submit_many, args=(client, n, QUICK, results, pause))
    sender.start()
    wait_for(lambda: len(results) >= after, timeout=120)
    t0 = time.monotonic()
    disrupt()
    back = time.time()
    sender.join(300)
    accepted = [r for r in results if r]
    wait_all_terminal(url, accepted, timeout=240)
    recover = time.monotonic() - t0
    # the safety net survived too: beat ticks and the reaper runs after the disruption
    wait_for(lambda: reaper_ticked_since(url, back), timeout=30, interval=0.25)
    return results, accepted, recover


def _ready_depth(broker_url: str, queue: str) -> int:
    with Connection(broker_url) as conn:
        channel: Any = conn.default_channel  # an AMQP channel; the stubs know only StdChannel
        return int(channel.queue_declare(queue=queue, passive=True).message_count)


def test_broker_restart_during_500_jobs(
    fault_app, cluster, fault_env, rabbit, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    results, accepted, recover = _disrupt_while_submitting(
        fault_app, cluster, url, 500, 0.005, 150, rabbit.restart
    )
    refused = len(results) - len(accepted)
    t = tally(url, accepted)
    fault_report(t.row("broker restart during 500 jobs", recover, refused_503=refused))
    assert len(results) == 500
    assert all(results[-50:]), "the API did not reconnect to the broker by itself"
    assert (t.lost, t.duplicated) == (0, 0)
    assert set(job_records(url)) == set(accepted)  # a 503 left no record behind
    assert all(job_records(url)[i]["status"] == "succeeded" for i in accepted)


def test_broker_stopped_at_submit_gives_503_and_no_phantom(
    fault_app, cluster, fault_env, rabbit, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    assert submit(client, NOOP)  # the API has a live broker connection first
    rabbit.stop()
    try:
        refused = [submit(client, NOOP) for _ in range(3)]
        assert refused == [None, None, None]
        assert len(job_records(url)) == 1  # no phantom records
    finally:
        t0 = time.monotonic()
        rabbit.start()
    cluster.worker("collect.noop")
    again = wait_for(lambda: submit(client, NOOP), timeout=30, interval=0.5)  # reconnects
    accepted = [*job_records(url)]
    wait_all_terminal(url, accepted, timeout=60)
    recover = time.monotonic() - t0
    assert again in accepted
    t = tally(url, accepted)
    fault_report(t.row("broker stopped at submit", recover, refused_503=3))
    assert (t.lost, t.duplicated) == (0, 0)


def test_hung_broker_workers_reconnect(fault_app, cluster, fault_env, rabbit, fault_report) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    w = cluster.worker("collect.flaky")
    maintenance, _ = cluster.maintenance()
    slow = {**QUICK, "options": {"flaky": {"sleep": 2}}}
    before = [submit(client, slow) for _ in range(8)]  # some still running when it hangs
    wait_for(lambda: _started(url, before), timeout=30)
    hang = 3 * float(fault_env["COLLECTQ_BROKER_HEARTBEAT"])
    t_pause = time.monotonic()
    rabbit.pause()  # SIGSTOP: sockets stay open, nothing answers
    try:
        during = submit(client, QUICK)  # the confirm never comes: 503 (or 202 if it got out)
        time.sleep(max(0.0, hang - (time.monotonic() - t_pause)))
    finally:
        rabbit.resume()
    t0 = time.monotonic()
    after = wait_for(lambda: submit(client, QUICK), timeout=60, interval=0.5)
    more = [submit(client, QUICK) for _ in range(19)]
    accepted = [i for i in [*before, during, after, *more] if i]
    wait_all_terminal(url, accepted, timeout=120)
    recover = time.monotonic() - t0
    assert w.proc.poll() is None
    # Missed AMQP heartbeats make a worker drop and re-open its connection; which one
    # notices first depends on timing (a connection the broker kept is fine to reuse).
    noticed = [p for p in (w, maintenance) if "Connection to broker lost" in p.log]
    assert noticed
    assert all(p.log.count("Connected to amqp") >= 2 for p in noticed)  # reconnected
    t = tally(url, accepted)
    fault_report(
        t.row(
            "broker SIGSTOP 3 heartbeats",
            recover,
            refused_503=int(during is None),
            workers_reconnected=len(noticed),
        )
    )
    assert (t.lost, t.duplicated) == (0, 0)
    assert set(job_records(url)) == set(accepted)  # a refused submit left no record
    assert len(accepted) >= 28


def _started(url: str, ids: list[str | None]) -> bool:
    records = job_records(url)
    return any(records.get(i or "", {}).get("s:flaky") == "running" for i in ids)


def test_redis_restart_with_aof_loses_no_job(
    fault_app, cluster, fault_env, redis_server, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    results, accepted, recover = _disrupt_while_submitting(
        fault_app, cluster, url, 200, 0.01, 60, redis_server.restart
    )
    t = tally(url, accepted)
    fault_report(
        t.row("redis restart (AOF) mid-run", recover, refused_503=len(results) - len(accepted))
    )
    assert (t.lost, t.duplicated) == (0, 0)
    assert all(job_records(url)[i]["status"] == "succeeded" for i in accepted)


def test_redis_stopped_at_submit_gives_503_and_publishes_nothing(
    fault_app, fault_env, redis_server, fault_report
) -> None:
    app = fault_app()
    client = app.test_client()
    with Connection(fault_env["COLLECTQ_BROKER_URL"]) as conn:  # queues exist, as in production
        for queue in app.extensions["celery"].conf.task_queues:
            queue(conn.default_channel).declare()
    redis_server.stop()
    try:
        resp = client.post("/v1/jobs", json=NOOP)
        assert resp.status_code == 503
        assert resp.json["dependency"] == "redis"
        assert resp.headers["Retry-After"]
    finally:
        redis_server.start()
    # no worker consumes collect.noop here: a published message would still sit in it
    assert _ready_depth(fault_env["COLLECTQ_BROKER_URL"], "collect.noop") == 0
    fault_report(
        {
            "scenario": "redis stopped at submit",
            "accepted": 0,
            "completed": 0,
            "lost": 0,
            "duplicated": 0,
            "recover_s": None,
            "refused_503": 1,
            "published": 0,
        }
    )


def test_redis_lost_during_a_request_gives_503_not_500(fault_app, redis_server) -> None:
    """Redis goes away after the request was counted by the rate limiter (here: during a
    long poll): the answer is the 503 for Redis, not a 500 from writing the limit headers."""
    client = fault_app().test_client()
    job = submit(client, NOOP)  # no worker: it stays queued and the poll waits
    assert job
    stopper = threading.Timer(0.5, redis_server.stop)
    stopper.start()
    try:
        resp = client.get(f"/v1/jobs/{job}?wait=5")
    finally:
        stopper.join()
        redis_server.start()
    assert resp.status_code == 503, resp.json
    assert resp.json["dependency"] == "redis"
    assert resp.headers["Retry-After"]
    assert resp.mimetype == "application/problem+json"


def test_broker_restarted_between_submits_the_next_is_accepted(
    fault_app, cluster, fault_env, rabbit
) -> None:
    """The API's publisher finds the connection the restart closed before it sends on it
    (app.jobs.publisher): the first submit after the broker is back is a 202, not a 503."""
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    cluster.worker("collect.noop")
    first = submit(client, NOOP)
    assert first  # the publisher's connection is open
    rabbit.restart()
    second = submit(client, NOOP)
    assert second, "the first submit after the broker came back was refused"
    wait_all_terminal(url, [first, second], timeout=60)
    assert {job_records(url)[j]["status"] for j in (first, second)} == {"succeeded"}
