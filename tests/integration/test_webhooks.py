"""Signed webhooks through real workers: retries, give-up, Retry-After, the deliveries list."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import wait_for
from tests.webhookreceiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

WEBHOOK_ENV = {
    "COLLECTQ_WEBHOOK_MAX_ATTEMPTS": "3",
    "COLLECTQ_WEBHOOK_BACKOFF_BASE": "0.05",
    "COLLECTQ_WEBHOOK_BACKOFF_MAX": "2",
    "COLLECTQ_WEBHOOK_TIMEOUT": "5",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def _submit(client: Any, url: str, **extra: Any) -> str:
    body = {"target": "example.org", "collectors": ["noop"], "callback_url": url, **extra}
    resp = client.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.json
    return str(resp.json["id"])


def _final_delivery(client: Any, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        items = client.get(f"/v1/jobs/{job_id}/deliveries").json["items"]
        final = [d for d in items if d["state"] in ("delivered", "failed")]
        return final[0] if final else None

    found: dict[str, Any] = wait_for(done, timeout=30)
    return found


def test_deliveries_retry_give_up_and_honour_retry_after(
    make_app, start_worker, receiver: Receiver
) -> None:
    app = make_app(**WEBHOOK_ENV)
    client = app.test_client()
    start_worker(queues="collect.noop,webhooks", **WEBHOOK_ENV)
    secret = client.get("/v1/webhooks/secret").json["secret"]
    receiver.script = {
        "/flaky": [(500, {}), (500, {}), (204, {})],
        "/down": [(503, {})],
        "/busy": [(429, {"Retry-After": "1"}), (200, {})],
    }
    flaky = _submit(client, f"{receiver.base}/flaky")
    down = _submit(client, f"{receiver.base}/down", callback_on=["failure", "always"])
    busy = _submit(client, f"{receiver.base}/busy")

    ok = _final_delivery(client, flaky)
    assert ok["state"] == "delivered"
    assert ok["event"] == "job.succeeded"
    assert [a["status_code"] for a in ok["attempts"]] == [500, 500, 204]
    assert all(a["duration_ms"] >= 0 and a["at"] for a in ok["attempts"])
    assert ok["attempts"][0]["response"] == "answer 500"
    # every request verifies with the owner's secret (Standard Webhooks), same id each time
    calls = receiver.on("/flaky")
    assert len(calls) == 3
    for call in calls:
        payload = Webhook(secret).verify(call.body, call.headers)
        assert payload["type"] == "job.succeeded"
        assert payload["data"]["id"] == flaky
        assert payload["data"]["status"] == "succeeded"
        assert payload["data"]["callback"] == {"url": f"{receiver.base}/flaky", "on": ["always"]}
    assert {c.headers["webhook-id"] for c in calls} == {ok["id"]}

    gave_up = _final_delivery(client, down)
    assert gave_up["state"] == "failed"
    assert [a["status_code"] for a in gave_up["attempts"]] == [503, 503, 503]
    assert len(receiver.on("/down")) == 3

    slow = _final_delivery(client, busy)
    assert slow["state"] == "delivered"
    assert [a["status_code"] for a in slow["attempts"]] == [429, 200]
    assert slow["attempts"][0]["retry_in_s"] >= 1
    first, second = receiver.on("/busy")
    assert second.at - first.at >= 0.9  # Retry-After: 1 honoured

    env = client.get(f"/v1/jobs/{flaky}").json
    assert env["callback"] == {"url": f"{receiver.base}/flaky", "on": ["always"]}


def test_callback_url_the_guard_refuses_is_a_422_naming_it(make_app) -> None:
    """The guard's decision only: nothing connects anywhere."""
    job = {"target": "example.org", "collectors": ["noop"]}
    # no allowlist: loopback is refused like any internal address
    strict = make_app(COLLECTQ_NET_ALLOW="").test_client()
    for url in ("http://localhost:8080/hook", "https://api.localhost/x"):
        resp = strict.post("/v1/jobs", json={**job, "callback_url": url})
        assert resp.status_code == 422, url
        assert "loopback" in resp.json["errors"]["callback_url"][0]
    client = make_app().test_client()
    for url in (
        "http://10.1.2.3/hook",
        "http://[fd00::1]/x",
        "ftp://example.org/",
        "http://x/\x01",
    ):
        resp = client.post("/v1/jobs", json={**job, "callback_url": url})
        assert resp.status_code == 422, url
        assert "callback_url" in resp.json["errors"], resp.json
    # the allowlisted name is accepted; callback_on alone is ignored
    ok = client.post("/v1/jobs", json={**job, "callback_url": "http://localhost:9/x"})
    assert ok.status_code == 202
    assert ok.json["callback"] == {"url": "http://localhost:9/x", "on": ["always"]}
    lonely = client.post("/v1/jobs", json={**job, "callback_on": ["failure"]})
    assert lonely.status_code == 202
    assert lonely.json["callback"] is None


def test_a_lost_announcement_is_republished_and_delivered_once(
    make_app, start_worker, receiver: Receiver
) -> None:
    from app.jobs.finalize import announce, republish_overdue
    from app.runtime import runtime

    app = make_app(**WEBHOOK_ENV)
    client = app.test_client()
    celery = app.extensions["celery"]
    store = runtime(app).store
    start_worker(queues="collect.noop", **WEBHOOK_ENV)  # no webhooks worker yet
    job_id = _submit(client, f"{receiver.base}/late")
    wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json["status"] == "succeeded")
    assert store.redis.zscore(store.keys.finished, job_id) is not None  # in the outbox
    # the worker's announcement is lost (as if the broker had not taken it)
    wait_for(lambda: _drop_webhook_messages(celery) or True)
    assert republish_overdue(store, celery, grace=60, timeout=3) == 0  # not overdue yet
    assert republish_overdue(store, celery, grace=0, timeout=3) == 1
    announce(celery, job_id)  # a second announcement: the finalizer runs twice
    start_worker(queues="webhooks", **WEBHOOK_ENV)

    delivered = _final_delivery(client, job_id)
    assert delivered["state"] == "delivered"
    wait_for(lambda: store.redis.zscore(store.keys.finished, job_id) is None)  # settled
    assert len(client.get(f"/v1/jobs/{job_id}/deliveries").json["items"]) == 1
    assert len(receiver.on("/late")) == 1
    payload = json.loads(receiver.on("/late")[0].body)
    assert payload["data"]["id"] == job_id


def _drop_webhook_messages(celery: Any) -> int:
    with celery.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge("webhooks") or 0)


def test_during_a_rotation_overlap_either_secret_verifies(
    make_app, start_worker, receiver: Receiver
) -> None:
    app = make_app(**WEBHOOK_ENV)
    client = app.test_client()
    old = client.get("/v1/webhooks/secret").json["secret"]
    rotated = client.post("/v1/webhooks/secret/rotate")
    assert rotated.status_code == 201
    new = rotated.json["secret"]
    assert new != old
    assert rotated.json["previous"] == old
    assert client.get("/v1/webhooks/secret").json["secret"] == new
    start_worker(queues="collect.noop,webhooks", **WEBHOOK_ENV)
    job_id = _submit(client, f"{receiver.base}/rotating")

    assert _final_delivery(client, job_id)["state"] == "delivered"
    (call,) = receiver.on("/rotating")
    assert len(call.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver that has either one verifies the delivery
        assert Webhook(secret).verify(call.body, call.headers)["data"]["id"] == job_id
    stranger = "whsec_" + "A" * 43
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(call.body, call.headers)


def test_a_cancelled_job_is_finalized_without_a_webhook(
    make_app, start_worker, receiver: Receiver
) -> None:
    from app.runtime import runtime

    app = make_app(**WEBHOOK_ENV)
    client = app.test_client()
    store = runtime(app).store
    job_id = _submit(client, f"{receiver.base}/cancelled")  # no worker: the job stays queued
    assert client.delete(f"/v1/jobs/{job_id}").json["status"] == "cancelled"
    assert store.redis.zscore(store.keys.finished, job_id) is not None  # the cancel fed the outbox
    start_worker(queues="webhooks", **WEBHOOK_ENV)
    # the API's announcement waited in the queue: the finalizer ran and sent nothing
    wait_for(lambda: store.redis.zscore(store.keys.finished, job_id) is None)
    assert client.get(f"/v1/jobs/{job_id}/deliveries").json["items"] == []
    assert receiver.on("/cancelled") == []


def test_an_attempt_is_claimed_once_and_a_dead_tasks_claim_is_taken_over(store) -> None:
    from app.webhooks.deliveries import DeliveryStore

    deliveries = DeliveryStore(store.redis, store.keys, ttl=60)
    record, created = deliveries.create("j_1", "job.failed", "https://hooks.example.org/")
    assert created
    assert not deliveries.create("j_1", "job.failed", "https://hooks.example.org/")[1]
    did = record["id"]
    assert deliveries.claim("j_1", did, 1, stale_after=60)
    assert not deliveries.claim("j_1", did, 1, stale_after=60)  # a duplicate message
    assert deliveries.claim("j_1", did, 2, stale_after=60)  # the next attempt is its own
    time.sleep(0.05)
    assert deliveries.claim("j_1", did, 1, stale_after=0.01)  # its task died: taken over
    assert [d["id"] for d in deliveries.list("j_1")] == [did]  # claims are not deliveries


def test_a_retry_whose_publish_failed_is_scheduled_when_its_message_comes_back(
    make_app,
) -> None:
    """The task made attempt 1, recorded `retrying`, then could not publish attempt 2 (the
    broker was down) and requeued its message: that message, back, schedules attempt 2 for
    the time attempt 1 chose — it does not make an attempt, nor leave the delivery stuck."""
    from app.jobs.envelope import utcnow
    from app.runtime import runtime
    from app.webhooks.deliver import Again, deliver, delivery_store
    from app.webhooks.deliveries import DeliveryState

    ctx = runtime(make_app())
    deliveries = delivery_store(ctx)
    did = deliveries.create("j_1", "job.failed", "https://hooks.example.org/")[0]["id"]
    assert deliveries.claim("j_1", did, 1, stale_after=60)
    attempt = {"attempt": 1, "at": utcnow(), "status_code": 500, "retry_in_s": 30.0}
    deliveries.add_attempt("j_1", did, attempt, DeliveryState.RETRYING)

    again = deliver(ctx, "j_1", did, 0)  # attempt 1's message, redelivered

    assert isinstance(again, Again)
    assert again.attempt == 1  # the next message makes attempt 2
    assert 25 < again.delay <= 30  # when attempt 1 said, not at once
    record = deliveries.get("j_1", did)
    assert record is not None
    assert len(record["attempts"]) == 1  # nothing was sent


def test_artifacts_inline_as_base64_only_when_asked_and_within_the_limit(
    make_app, start_worker, receiver: Receiver, site: Any
) -> None:
    env = {**WEBHOOK_ENV, "COLLECTQ_WEBHOOK_INLINE_MAX_BYTES": "100"}
    app = make_app(**env)
    client = app.test_client()
    start_worker(queues="collect.http,webhooks", **env)
    small, big = b"<p>inline me</p>\n", b"x" * 101
    site.expect_request("/small").respond_with_data(small, content_type="text/html")
    site.expect_request("/big").respond_with_data(big, content_type="text/plain")
    secret = client.get("/v1/webhooks/secret").json["secret"]

    def submit(page: str, hook: str, **extra: Any) -> str:
        body = {"target": site.url_for(page), "collectors": ["http"], **extra}
        return _submit(client, f"{receiver.base}{hook}", **body)

    inline = submit("/small", "/inline", callback_artifacts="inline")
    links = submit("/small", "/links")
    over = submit("/big", "/over", callback_artifacts="inline")

    def artifact(job_id: str, hook: str) -> dict[str, Any]:
        assert _final_delivery(client, job_id)["state"] == "delivered"
        (call,) = receiver.on(hook)
        payload = Webhook(secret).verify(call.body, call.headers)  # signed as sent
        assert payload["data"]["status"] == "succeeded"
        (art,) = payload["data"]["results"]["http"]["artifacts"]
        assert art["name"] == "http.body"
        assert art["url"].endswith(f"/v1/jobs/{job_id}/artifacts/http.body")
        return dict(art)

    got = artifact(inline, "/inline")
    assert got["inline"] is True
    assert base64.b64decode(got["content_base64"]) == small
    assert client.get(f"/v1/jobs/{inline}").json["callback"]["artifacts"] == "inline"

    plain = artifact(links, "/links")
    assert "content_base64" not in plain
    assert "inline" not in plain
    assert "artifacts" not in client.get(f"/v1/jobs/{links}").json["callback"]

    beyond = artifact(over, "/over")
    assert beyond["inline"] is False
    assert beyond["reason"] == "over WEBHOOK_INLINE_MAX_BYTES"
    assert "content_base64" not in beyond

    bad = client.post(
        "/v1/jobs",
        json={"target": "example.org", "collectors": ["noop"], "callback_artifacts": "zip"},
    )
    assert bad.status_code == 422
    assert "callback_artifacts" in bad.json["errors"]
