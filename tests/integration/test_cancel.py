"""Cancellation: queued work never starts, running work is revoked, the record is final."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.integration

SLOW = {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"sleep": 30}}}


def _running(client, location: str) -> bool:
    return client.get(location).json["results"]["flaky"]["status"] == "running"


def test_cancel_terminates_running_work_on_prefork(make_app, start_worker) -> None:
    worker = start_worker(COLLECTQ_WORKER_POOL="prefork")
    client = make_app(COLLECTQ_WORKER_POOL="prefork").test_client()
    location = client.post("/v1/jobs", json=SLOW).headers["Location"]
    wait_for(lambda: _running(client, location), timeout=30)
    job_id = location.rsplit("/", 1)[1]

    resp = client.delete(location)

    assert resp.status_code == 200
    assert resp.json["status"] == "cancelled"
    wait_for(lambda: f"Terminating {job_id}.flaky" in worker.log_path.read_text(), timeout=20)
    after = client.post("/v1/jobs", json={"target": "example.org", "collectors": ["noop"]})
    assert client.get(f"{after.headers['Location']}?wait=20").json["status"] == "succeeded"
    env = client.get(location).json
    assert env["status"] == "cancelled"
    assert env["results"]["flaky"]["status"] == "cancelled"
    assert worker.proc.poll() is None


def test_cancel_while_running_on_threads_discards_the_late_result(make_app, start_worker) -> None:
    worker = start_worker()
    app = make_app()
    client = app.test_client()
    body = {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"sleep": 1}}}
    location = client.post("/v1/jobs", json=body).headers["Location"]
    wait_for(lambda: _running(client, location), timeout=30)
    assert client.delete(location).json["status"] == "cancelled"
    job_id = location.rsplit("/", 1)[1]
    store = app.extensions["collectq"].store
    # the collector finishes its call, tries to record, and is refused
    wait_for(lambda: f"{job_id}.flaky] succeeded" in worker.log_path.read_text(), timeout=20)
    raw = store.redis.hgetall(store.keys.job(job_id))
    assert json.loads(raw[b"r:flaky"])["status"] == "cancelled"
    assert raw[b"t:flaky"] == b"1"  # one terminal record: the cancel
