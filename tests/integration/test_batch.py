"""POST /v1/jobs/batch: each item accepted or rejected on its own (issue 13, item 8)."""

from __future__ import annotations

from typing import Any

from app.runtime import runtime
from tests.conftest import wait_for

NOOP = {"target": "example.org", "collectors": ["noop"]}


def _batch(client: Any, jobs: list[Any], **headers: str) -> Any:
    return client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=headers)


def test_items_are_answered_one_by_one(make_app) -> None:
    client = make_app(COLLECTQ_MAX_AGE_MAX="600").test_client()
    resp = _batch(
        client,
        [
            {**NOOP, "max_age": 0},
            {**NOOP, "max_age": 60},  # identical to item 0, still queued: the same job
            {**NOOP, "max_age": 601},  # over this server's MAX_AGE_MAX: this item only
            {**NOOP, "labels": {"n": "3"}, "fresh": True},  # a job of its own
        ],
    )
    assert resp.status_code == 200, resp.json
    items = resp.json["items"]
    assert [i["index"] for i in items] == list(range(4))
    assert [i["status"] for i in items] == [202, 202, 422, 202]
    assert (resp.json["accepted"], resp.json["rejected"]) == (3, 1)
    assert items[1]["job"]["id"] == items[0]["job"]["id"]
    assert items[1]["reused"] == "in-flight"
    assert items[2]["problem"]["type"].endswith("/validation_error")
    assert "max_age" in items[2]["problem"]["errors"]
    assert items[3]["job"]["id"] != items[0]["job"]["id"]
    for i in (0, 3):  # accepted jobs are real jobs
        got = client.get(f"/v1/jobs/{items[i]['job']['id']}")
        assert got.status_code == 200
        assert got.json["status"] == "queued"


def test_invalid_items_are_refused_in_their_slots_and_the_others_run(
    make_app, start_worker
) -> None:
    client = make_app().test_client()
    resp = _batch(
        client,
        [
            {"target": "not a host", "collectors": ["noop"]},  # the schema refuses it
            NOOP,
            {"target": "example.org", "collectors": ["nope"]},  # what only the registry knows
            {**NOOP, "labels": {"n": "1"}, "fresh": True},
            {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"x": 1}}},
            "not an object",
            {"collectors": ["noop"], "extra": 1},
        ],
    )
    assert resp.status_code == 200, resp.json
    items = resp.json["items"]
    assert [i["index"] for i in items] == list(range(7))
    assert [i["status"] for i in items] == [422, 202, 422, 202, 422, 422, 422]
    assert (resp.json["accepted"], resp.json["rejected"]) == (2, 5)
    refused = {i["index"]: i["problem"] for i in items if "problem" in i}
    assert all(p["type"].endswith("/validation_error") for p in refused.values())
    assert set(refused[0]["errors"]) == {"target"}
    assert set(refused[2]["errors"]) == {"collectors"}
    assert set(refused[4]["errors"]) == {"options"}
    assert set(refused[5]["errors"]) == {"_schema"}
    assert set(refused[6]["errors"]) == {"target", "extra"}
    # the valid items, and only they, were submitted; they run
    submitted = {items[i]["job"]["id"] for i in (1, 3)}
    assert {j["id"] for j in client.get("/v1/jobs").json["items"]} == submitted
    start_worker(queues="collect.noop", concurrency=2)

    def succeeded() -> bool:
        return all(client.get(f"/v1/jobs/{j}").json["status"] == "succeeded" for j in submitted)

    wait_for(succeeded)


def test_a_malformed_envelope_refuses_the_whole_batch(make_app) -> None:
    client = make_app(COLLECTQ_BATCH_MAX="2").test_client()
    over = _batch(client, [NOOP, NOOP, NOOP])
    assert over.status_code == 422
    assert "jobs" in over.json["errors"]
    assert _batch(client, []).status_code == 422
    for body in ({}, {"jobs": NOOP}, {"jobs": [NOOP], "more": 1}):  # missing, not a list, extra
        refused = client.post("/v1/jobs/batch", json=body)
        assert refused.status_code == 422, body
        assert set(refused.json["errors"]) <= {"jobs", "more"}, refused.json
    assert client.post("/v1/jobs/batch", json=[NOOP]).status_code == 400  # not an object
    keyed = _batch(client, [NOOP], **{"Idempotency-Key": "k"})
    assert keyed.status_code == 422
    assert "Idempotency-Key" in keyed.json["errors"]
    assert client.get("/v1/jobs").json["items"] == []  # nothing of a refused batch was queued


def test_quota_per_item_and_a_batch_of_n_is_n_submits(make_app) -> None:
    app = make_app(COLLECTQ_MAX_QUEUED_JOBS="2", COLLECTQ_RATE_LIMIT_SUBMIT="5/minute")
    token = runtime(app).keys.create(owner="a", name="n", scopes=["jobs:write", "jobs:read"])[1]
    client = app.test_client(api_key=token)
    jobs = [{**NOOP, "labels": {"n": str(i)}, "fresh": True} for i in range(3)]
    resp = _batch(client, jobs)
    assert resp.status_code == 200
    assert [i["status"] for i in resp.json["items"]] == [202, 202, 429]
    quota = resp.json["items"][2]["problem"]
    assert quota["type"].endswith("/quota_exceeded")
    assert quota["limit"] == 2
    assert resp.headers["RateLimit-Remaining"] == "2"  # 5 - 3
    limited = _batch(client, jobs)  # 3 more than the 2 left: the whole batch waits
    assert limited.status_code == 429
    assert limited.json["type"].endswith("/rate_limited")


def test_batch_and_max_age_are_documented(make_app) -> None:
    doc = make_app().test_client().get("/openapi.json").json
    post = doc["paths"]["/v1/jobs/batch"]["post"]
    assert "200" in post["responses"]
    assert "422" in post["responses"]
    assert "max_age" in doc["components"]["schemas"]["JobRequest"]["properties"]
    assert "200" in doc["paths"]["/v1/jobs"]["post"]["responses"]


def test_batch_path_allows_post_only(make_app) -> None:
    # /v1/jobs/batch also matches /v1/jobs/<job_id> (GET, DELETE): not advertised here
    allow = make_app().test_client().options("/v1/jobs/batch").headers["Allow"]
    assert sorted(allow.split(", ")) == ["OPTIONS", "POST"]
