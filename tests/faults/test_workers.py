"""Faults on the worker side: killed, stopped, frozen, hung, crashing; foreign messages."""

from __future__ import annotations

import json
import signal
import time

import pytest
from kombu import Connection, Exchange, Producer

from tests.conftest import wait_for
from tests.faults.conftest import accepted, job, tally, wait_all_terminal

pytestmark = pytest.mark.faults

SLOW = {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"sleep": 1.5}}}


def _running(url: str, ids: list[str]) -> int:
    return sum(job(url, i).get("s:flaky") == "running" for i in ids)


def test_killed_worker_jobs_complete_once(fault_app, cluster, fault_env, fault_report) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    doomed = cluster.worker("collect.flaky")
    ids = [accepted(client, SLOW) for _ in range(12)]
    assert all(ids)
    wait_for(lambda: _running(url, ids) >= 2, timeout=30)
    doomed.kill_group()  # SIGKILL: no ack, no goodbye
    t0 = time.monotonic()
    cluster.worker("collect.flaky")
    wait_all_terminal(url, ids, timeout=120)
    recover = time.monotonic() - t0
    t = tally(url, ids)
    fault_report(t.row("kill -9 worker holding tasks", recover))
    assert (t.lost, t.duplicated) == (0, 0)
    assert all(job(url, i)["status"] == "succeeded" for i in ids)
    assert max(t.attempts) >= 2  # the interrupted ones ran again, and show it


def test_sigterm_worker_finishes_task_and_exits_0(
    fault_app, cluster, fault_env, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    w = cluster.worker("collect.flaky")
    body = {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"sleep": 3}}}
    job_id = accepted(client, body)
    wait_for(lambda: job(url, job_id).get("s:flaky") == "running", timeout=30)
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.proc.wait(60) == 0, w.log[-2000:]
    recover = time.monotonic() - t0
    t = tally(url, [job_id])
    fault_report(t.row("SIGTERM worker mid-task", recover, exit_code=0))
    assert job(url, job_id)["status"] == "succeeded"
    assert json.loads(job(url, job_id)["r:flaky"])["attempts"] == 1  # finished, not redone
    assert (t.lost, t.duplicated) == (0, 0)


def test_reaper_resolves_a_message_stuck_with_a_frozen_worker(
    fault_app, cluster, fault_env, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    cluster.maintenance()
    # No AMQP heartbeat: the broker never notices the frozen consumer, only the reaper
    # can. One slot: a frozen consumer with free prefetch would swallow the requeue too.
    frozen = cluster.worker("collect.flaky", COLLECTQ_BROKER_HEARTBEAT="0", concurrency="1")
    body = {
        "target": "example.org",
        "collectors": ["flaky"],
        "options": {"flaky": {"sleep": 600, "slow_attempts": 1}},
    }
    job_id = accepted(client, body)
    wait_for(lambda: job(url, job_id).get("s:flaky") == "running", timeout=30)
    frozen.signal(signal.SIGSTOP)  # holds the message unacked, sends no heartbeat
    t0 = time.monotonic()
    cluster.worker("collect.flaky")
    wait_all_terminal(url, [job_id], timeout=90)
    recover = time.monotonic() - t0
    frozen.kill_group()
    h = job(url, job_id)
    t = tally(url, [job_id])
    fault_report(t.row("reaper resolves a stuck message", recover))
    assert h["status"] == "succeeded"
    assert h["k:flaky"] == "1"  # requeued once by the reaper
    assert json.loads(h["r:flaky"])["attempts"] == 2
    assert (t.lost, t.duplicated) == (0, 0)


def test_hard_time_limit_fails_job_and_worker_lives(
    fault_app, cluster, fault_env, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    limits = {"COLLECTQ_SOFT_TIME_LIMIT": "1", "COLLECTQ_HARD_TIME_LIMIT": "3"}
    client = fault_app(**limits).test_client()
    w = cluster.worker("collect.flaky,collect.noop", COLLECTQ_WORKER_POOL="prefork", **limits)
    body = {
        "target": "example.org",
        "collectors": ["flaky"],
        "options": {"flaky": {"sleep": 60, "stubborn": True}},
    }
    job_id = accepted(client, body)
    t0 = time.monotonic()
    wait_all_terminal(url, [job_id], timeout=60)
    recover = time.monotonic() - t0
    h = job(url, job_id)
    assert h["status"] == "failed"
    assert json.loads(h["r:flaky"])["error"]["type"] == "time_limit"
    after = accepted(client, {"target": "example.org", "collectors": ["noop"]})
    wait_all_terminal(url, [after], timeout=30)
    assert job(url, after)["status"] == "succeeded"
    assert w.proc.poll() is None
    time.sleep(1)  # let a late channel error reach the log, if there were one
    assert "PRECONDITION_FAILED" not in w.log
    t = tally(url, [job_id, after])
    fault_report(t.row("hard time limit", recover, job_status="failed/time_limit"))
    assert (t.lost, t.duplicated) == (0, 0)


def test_poison_message_fails_after_redelivery_limit(
    fault_app, cluster, fault_env, fault_report
) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    cluster.worker("collect.flaky,collect.noop", COLLECTQ_WORKER_POOL="prefork", concurrency="2")
    cluster.maintenance()
    poison = accepted(
        client,
        {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"crash": True}}},
    )
    t0 = time.monotonic()
    others = [
        accepted(client, {"target": "example.org", "collectors": ["noop"]}) for _ in range(10)
    ]
    wait_all_terminal(url, [poison, *others], timeout=120)
    recover = time.monotonic() - t0
    h = job(url, poison)
    assert h["status"] == "failed"
    assert json.loads(h["r:flaky"])["error"]["type"] == "redelivery_limit"
    assert int(h["x:flaky"]) == 4  # MAX_REDELIVERIES (3) + the one that gave up
    assert all(job(url, i)["status"] == "succeeded" for i in others)
    t = tally(url, [poison, *others])
    fault_report(t.row("poison message", recover, job_status="failed/redelivery_limit"))
    assert (t.lost, t.duplicated) == (0, 0)


def test_pickle_message_is_refused(fault_app, cluster, fault_env, rabbit, fault_report) -> None:
    url = fault_env["COLLECTQ_REDIS_URL"]
    app = fault_app()
    client = app.test_client()
    store = app.extensions["collectq"].store
    target = store.create(
        owner="public", target="example.org", collectors=["noop"], options={}, labels={}
    )["id"]
    w = cluster.worker("collect.noop")
    with Connection(fault_env["COLLECTQ_BROKER_URL"]) as conn:
        Producer(conn).publish(
            [[target, "noop"], {}, {}],
            exchange=Exchange("collectq", type="direct", durable=True),
            routing_key="collect.noop",
            serializer="pickle",
            headers={"task": "collect.noop", "id": f"{target}.noop", "lang": "py"},
        )
    wait_for(lambda: "ContentDisallowed" in w.log or "pickle" in w.log, timeout=30)
    control = accepted(client, {"target": "example.org", "collectors": ["noop"]})
    wait_all_terminal(url, [control], timeout=30)  # the worker consumes, yet ...
    assert job(url, target)["status"] == "queued"  # ... the pickled task never ran
    assert job(url, target)["a:noop"] == "0"
    t = tally(url, [control])
    fault_report(t.row("pickle message refused", None, executed=0))
    assert (t.lost, t.duplicated) == (0, 0)


def test_cold_shutdown_requeues_what_the_worker_holds(
    fault_app, cluster, fault_env, fault_report
) -> None:
    """SIGQUIT (what `collectq up` sends a worker still busy after its grace): Celery's
    soft shutdown gives the task SOFT_SHUTDOWN_TIMEOUT, then puts its message back.

    Prefork only: Celery's thread pool cannot terminate a job, its cold shutdown falls
    back to a warm one (see docs/decisions.md); there the final SIGKILL requeues."""
    url = fault_env["COLLECTQ_REDIS_URL"]
    client = fault_app().test_client()
    w = cluster.worker(
        "collect.flaky", COLLECTQ_SOFT_SHUTDOWN_TIMEOUT="1", COLLECTQ_WORKER_POOL="prefork"
    )
    body = {
        "target": "example.org",
        "collectors": ["flaky"],
        "options": {"flaky": {"sleep": 600, "slow_attempts": 1}},
    }
    job_id = accepted(client, body)
    wait_for(lambda: job(url, job_id).get("s:flaky") == "running", timeout=30)
    t0 = time.monotonic()
    w.signal(signal.SIGQUIT)
    w.proc.wait(60)  # bounded: it does not wait for the 600 s task
    assert "Initiating Soft Shutdown" in w.log
    cluster.worker("collect.flaky")
    wait_all_terminal(url, [job_id], timeout=60)
    recover = time.monotonic() - t0
    h = job(url, job_id)
    t = tally(url, [job_id])
    fault_report(t.row("SIGQUIT worker: soft shutdown requeues", recover))
    assert h["status"] == "succeeded"
    assert json.loads(h["r:flaky"])["attempts"] == 2  # the requeued message ran again
    assert h.get("k:flaky") is None  # the broker got it back; the reaper had nothing to do
    assert (t.lost, t.duplicated) == (0, 0)
