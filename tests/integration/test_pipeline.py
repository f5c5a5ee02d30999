"""Submit → RabbitMQ → a real worker process → Redis → poll, against the real services."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from app.jobs.store import ALL_OWNERS
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration


def _submit(client: Any, body: dict[str, Any], **headers: str) -> Any:
    resp = client.post("/v1/jobs", json=body, headers=headers)
    assert resp.status_code == 202, resp.json
    assert resp.headers["Location"] == f"/v1/jobs/{resp.json['id']}"
    return resp


def _wait_terminal(client: Any, location: str) -> dict[str, Any]:
    resp = client.get(f"{location}?wait=20")
    assert resp.status_code == 200
    return resp.json


def test_http_job_succeeds_through_real_worker(make_app, start_worker, httpserver) -> None:
    httpserver.expect_request("/page").respond_with_data("<h1>hello</h1>", content_type="text/html")
    start_worker()
    client = make_app().test_client()
    resp = _submit(client, {"target": httpserver.url_for("/page"), "collectors": ["http"]})
    assert resp.json["status"] == "queued"

    env = _wait_terminal(client, resp.headers["Location"])

    assert env["status"] == "succeeded", env
    http = env["results"]["http"]
    assert http["attempts"] == 1
    assert http["data"]["status_code"] == 200
    art = client.get(f"/v1/jobs/{env['id']}/artifacts/http.body")
    assert art.status_code == 200
    assert art.data == b"<h1>hello</h1>"
    assert art.headers["Content-Type"].startswith("text/html")
    inline = client.get(f"/v1/jobs/{env['id']}/artifacts/http.body?inline=1").json
    assert base64.b64decode(inline["data_base64"]) == b"<h1>hello</h1>"


def test_target_404_is_data_not_failure(make_app, start_worker, httpserver) -> None:
    httpserver.expect_request("/missing").respond_with_data("nope", status=404)
    start_worker()
    client = make_app().test_client()
    resp = _submit(client, {"target": httpserver.url_for("/missing"), "collectors": ["http"]})
    env = _wait_terminal(client, resp.headers["Location"])
    assert env["status"] == "succeeded"
    assert env["results"]["http"]["data"]["status_code"] == 404


def test_job_waits_queued_while_no_worker_then_completes(make_app, start_worker) -> None:
    client = make_app().test_client()
    resp = _submit(client, {"target": "example.org", "collectors": ["noop"]})
    location = resp.headers["Location"]

    still = client.get(f"{location}?wait=1").json
    assert still["status"] == "queued"

    start_worker()
    assert _wait_terminal(client, location)["status"] == "succeeded"


def test_submit_with_wait_answers_when_the_job_ends(make_app, start_worker) -> None:
    client = make_app().test_client()
    body = {"target": "example.org", "collectors": ["noop"]}
    # no worker yet: the wait runs out and the answer is the 202 a submit always gives
    pending = client.post("/v1/jobs?wait=0.5", json=body)
    assert pending.status_code == 202, pending.json
    assert pending.json["status"] == "queued"

    start_worker()
    assert _wait_terminal(client, pending.headers["Location"])["status"] == "succeeded"
    done = client.post("/v1/jobs?wait=20", json={**body, "target": "b.example.org"})
    assert done.status_code == 200, done.json
    assert done.json["status"] == "succeeded"
    assert done.json["results"]["noop"]["status"] == "succeeded"
    assert done.headers["Location"] == f"/v1/jobs/{done.json['id']}"
    assert client.get(done.headers["Location"]).json == done.json
    bad = client.post("/v1/jobs?wait=-1", json=body)
    assert bad.status_code == 422
    assert "wait" in bad.json["errors"], bad.json


def test_transient_failures_are_retried_and_counted(make_app, start_worker) -> None:
    start_worker()
    client = make_app().test_client()
    body = {
        "target": "example.org",
        "collectors": ["flaky"],
        "options": {"flaky": {"fail_times": 2}},
    }
    env = _wait_terminal(client, _submit(client, body).headers["Location"])
    flaky = env["results"]["flaky"]
    assert env["status"] == "succeeded"
    assert flaky["attempts"] == 3
    assert flaky["data"] == {"attempt": 3}


def test_retries_exhausted_fail_with_the_error(make_app, start_worker) -> None:
    start_worker(COLLECTQ_MAX_RETRIES="2")
    client = make_app(COLLECTQ_MAX_RETRIES="2").test_client()
    body = {
        "target": "example.org",
        "collectors": ["flaky"],
        "options": {"flaky": {"fail_times": 9}},
    }
    env = _wait_terminal(client, _submit(client, body).headers["Location"])
    flaky = env["results"]["flaky"]
    assert env["status"] == "failed"
    assert flaky["attempts"] == 3
    assert flaky["error"]["type"] == "connect_error"
    assert flaky["error"]["retryable"] is True


def test_mixed_outcomes_make_a_partial_job(make_app, start_worker) -> None:
    start_worker(COLLECTQ_MAX_RETRIES="0")
    client = make_app().test_client()
    body = {
        "target": "example.org",
        "collectors": ["noop", "flaky"],
        "options": {"flaky": {"fail_times": 5}},
    }
    env = _wait_terminal(client, _submit(client, body).headers["Location"])
    assert env["status"] == "partial"
    assert env["results"]["noop"]["status"] == "succeeded"
    assert env["results"]["flaky"]["status"] == "failed"


def test_cancelled_job_is_skipped_by_the_worker(make_app, start_worker) -> None:
    client = make_app().test_client()
    location = _submit(client, {"target": "example.org", "collectors": ["noop"]}).headers[
        "Location"
    ]
    cancelled = client.delete(location)
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "cancelled"

    worker = start_worker()
    wait_for(lambda: b"skipped" in worker.log_path.read_bytes() or None, timeout=20)
    env = client.get(location).json
    assert env["status"] == "cancelled"
    assert env["results"]["noop"]["status"] == "cancelled"
    again = client.delete(location)
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"


def test_idempotency_key_returns_the_first_job(make_app) -> None:
    client = make_app().test_client()
    body = {"target": "example.org", "collectors": ["noop"]}
    first = _submit(client, body, **{"Idempotency-Key": "abc-1"})
    second = _submit(client, body, **{"Idempotency-Key": "abc-1"})
    assert second.json["id"] == first.json["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    # another key, the same work while the first is in flight: that job (not a new one)
    third = _submit(client, body, **{"Idempotency-Key": "abc-2"})
    assert third.json["id"] == first.json["id"]
    assert third.headers["Collectq-Reused"] == "in-flight"
    fourth = _submit(client, {**body, "fresh": True}, **{"Idempotency-Key": "abc-3"})
    assert fourth.json["id"] != first.json["id"]


def test_listing_paginates_and_filters(make_app) -> None:
    client = make_app().test_client()
    ids = [
        _submit(
            client,
            {
                "target": "example.org",
                "collectors": ["noop"],
                "labels": {"n": str(i)},
                "fresh": True,
            },
        ).json["id"]
        for i in range(5)
    ]
    page1 = client.get("/v1/jobs?limit=2").json
    page2 = client.get(f"/v1/jobs?limit=2&cursor={page1['next_cursor']}").json
    seen = [j["id"] for j in page1["items"] + page2["items"]]
    assert seen == list(reversed(ids))[:4]
    only = client.get("/v1/jobs?label=n=3").json["items"]
    assert [j["id"] for j in only] == [ids[3]]
    assert client.get("/v1/jobs?status=succeeded").json["items"] == []
    assert client.get("/v1/jobs?status=bogus").status_code == 422


def test_broker_unreachable_gives_503_and_leaves_no_job(make_app) -> None:
    app = make_app(COLLECTQ_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    client = app.test_client()
    store = app.extensions["collectq"].store
    before = list(store.iter_ids(ALL_OWNERS, None))

    resp = client.post("/v1/jobs", json={"target": "example.org", "collectors": ["noop"]})

    assert resp.status_code == 503
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["Retry-After"]
    assert resp.json["dependency"] == "broker"
    assert list(store.iter_ids(ALL_OWNERS, None)) == before
    assert store.redis.keys(store.keys.job("*")) == []
    assert client.get("/ready").status_code == 503


def test_redis_unreachable_gives_503(make_app) -> None:
    client = make_app(COLLECTQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    resp = client.post("/v1/jobs", json={"target": "example.org", "collectors": ["noop"]})
    assert resp.status_code == 503
    assert resp.json["dependency"] == "redis"
    assert client.get("/v1/jobs/j_01M887CQSBQGS7Y298Z8V2M0PT").status_code == 503
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert "redis" in ready.json["detail"]


def test_status_reports_workers_and_queue_depths(make_app, start_worker) -> None:
    client = make_app().test_client()
    _submit(client, {"target": "example.org", "collectors": ["flaky"]})
    status = client.get("/v1/status").json
    assert status["broker"]["ok"]
    assert status["redis"]["ok"]
    assert "***" in status["broker"]["url"]
    assert status["queues"]["collect.flaky"]["depth"] == 1
    start_worker()
    status = wait_for(
        lambda: (s := client.get("/v1/status").json)["queues"]["collect.flaky"]["workers"] and s
    )
    assert status["queues"]["collect.noop"]["workers"]
    legacy = client.get("/containers/status")
    assert legacy.headers["Deprecation"] == "true"
    assert 'rel="successor-version"' in legacy.headers["Link"]


def test_one_job_fans_out_to_http_and_dns(make_app, start_worker, httpserver) -> None:
    from tests.dnsserver import dns_server

    httpserver.expect_request("/").respond_with_data("ok")
    port = free_port()
    start_worker("collect.http,collect.dns")
    client = make_app().test_client()
    body = {
        "target": httpserver.url_for("/"),
        "collectors": ["http", "dns"],
        "options": {"dns": {"nameserver": "127.0.0.1", "port": port, "types": ["A"]}},
    }
    with dns_server(port):
        env = _wait_terminal(client, _submit(client, body).headers["Location"])
    # the target is http://localhost:PORT/: the test zone has no "localhost", so NXDOMAIN (data)
    assert env["status"] == "succeeded", env
    assert env["results"]["http"]["data"]["status_code"] == 200
    assert env["results"]["dns"]["data"]["answers"]["A"]["rcode"] == "NXDOMAIN"
