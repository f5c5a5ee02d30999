"""Idempotency-Key with a body hash, `max_age` reuse and in-flight dedupe (issue 13, item 6)."""

from __future__ import annotations

import time
from typing import Any

from app.runtime import runtime

NOOP = {"target": "example.org", "collectors": ["noop"]}
REUSED = "Collectq-Reused"


def _post(client: Any, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/jobs", json=body, headers=headers)


def _done(client: Any, job_id: str) -> dict[str, Any]:
    env: dict[str, Any] = client.get(f"/v1/jobs/{job_id}?wait=20").json
    assert env["status"] not in ("queued", "running"), env
    return env


def test_same_key_other_body_is_422_same_body_the_first_job(make_app) -> None:
    client = make_app().test_client()
    first = _post(client, NOOP, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202
    # the same body, another key order and spelling of defaults: a replay of the first job
    same = {"collectors": ["noop"], "target": "example.org", "labels": {}}
    replay = _post(client, same, **{"Idempotency-Key": "k-1"})
    assert replay.status_code == 202
    assert replay.json["id"] == first.json["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = _post(client, {**NOOP, "labels": {"run": "2"}}, **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422, other.json
    assert other.mimetype == "application/problem+json"
    assert other.json["type"].endswith("/idempotency_key_reused")
    assert "Idempotency-Key" in other.json["errors"]
    # refused, not bound: the key still replays the first job
    assert _post(client, NOOP, **{"Idempotency-Key": "k-1"}).json["id"] == first.json["id"]


def test_in_flight_identical_requests_share_one_job(make_app) -> None:
    app = make_app(COLLECTQ_MAX_AGE_MAX="600")
    client = app.test_client()
    first = _post(client, {**NOOP, "max_age": 0})
    assert first.status_code == 202
    assert REUSED not in first.headers
    again = _post(client, {**NOOP, "max_age": 300, "labels": {"x": "y"}})  # labels don't count
    assert again.status_code == 202
    assert again.json["id"] == first.json["id"]
    assert again.headers[REUSED] == "in-flight"
    assert again.headers["Location"] == f"/v1/jobs/{first.json['id']}"
    # an Idempotency-Key on a reused job is bound to it: its retry is a replay of that job
    keyed = {**NOOP, "max_age": 300}
    first_try = _post(client, keyed, **{"Idempotency-Key": "r-1"})
    assert first_try.headers[REUSED] == "in-flight"
    retry = _post(client, keyed, **{"Idempotency-Key": "r-1"})
    assert retry.json["id"] == first.json["id"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert _post(client, NOOP, **{"Idempotency-Key": "r-1"}).status_code == 422  # other body
    # without max_age too: identical requests in flight are never enqueued twice
    same = _post(client, NOOP)
    assert (same.status_code, same.json["id"]) == (202, first.json["id"])
    assert same.headers[REUSED] == "in-flight"
    # fresh: a new job whatever runs; it reuses nothing, so a max_age with it is moot
    plain = _post(client, {**NOOP, "fresh": True})
    assert plain.status_code == 202
    assert REUSED not in plain.headers
    assert plain.json["id"] != first.json["id"]
    both = _post(client, {**NOOP, "fresh": True, "max_age": 60})
    assert both.status_code == 202
    assert REUSED not in both.headers
    assert both.json["id"] not in (first.json["id"], plain.json["id"])
    # another target, other options: other work
    assert _post(client, {**NOOP, "target": "example.net", "max_age": 0}).json["id"] not in (
        first.json["id"],
        plain.json["id"],
    )
    # another owner never gets this owner's job
    token = runtime(app).keys.create(owner="other", name="n", scopes=["jobs:write"])[1]
    theirs = _post(app.test_client(api_key=token), {**NOOP, "max_age": 300})
    assert theirs.status_code == 202
    assert REUSED not in theirs.headers
    assert theirs.json["id"] not in (first.json["id"], plain.json["id"])
    # bounded by the server's setting, naming the field
    over = _post(client, {**NOOP, "max_age": 601})
    assert over.status_code == 422
    assert "max_age" in over.json["errors"]
    assert _post(client, {**NOOP, "max_age": -1}).status_code == 422


def test_max_age_reuses_a_young_succeeded_job_never_a_failed_one(make_app, start_worker) -> None:
    start_worker(COLLECTQ_MAX_RETRIES="0")
    client = make_app().test_client()
    first = _post(client, NOOP)
    assert _done(client, first.json["id"])["status"] == "succeeded"

    reused = _post(client, {**NOOP, "max_age": 60})
    assert reused.status_code == 200, reused.json
    assert reused.headers[REUSED] == "succeeded"
    assert reused.json["id"] == first.json["id"]
    assert reused.json["status"] == "succeeded"

    time.sleep(1.1)
    fresh = _post(client, {**NOOP, "max_age": 1})  # the succeeded job is too old now
    assert fresh.status_code == 202
    assert REUSED not in fresh.headers
    assert fresh.json["id"] != first.json["id"]
    assert _done(client, fresh.json["id"])["status"] == "succeeded"
    # the newest succeeded one is reused (not the older)
    assert _post(client, {**NOOP, "max_age": 60}).json["id"] == fresh.json["id"]

    flaky = {
        "target": "example.org",
        "collectors": ["flaky"],
        "options": {"flaky": {"fail_times": 5}},
    }
    failed = _post(client, flaky)
    assert _done(client, failed.json["id"])["status"] == "failed"
    retry = _post(client, {**flaky, "max_age": 3600})
    assert retry.status_code == 202
    assert REUSED not in retry.headers
    assert retry.json["id"] != failed.json["id"]
