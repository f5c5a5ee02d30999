"""POST /v1/jobs/batch: each item accepted or rejected on its own (issue 13, item 8)."""

from __future__ import annotations

from typing import Any

from app.runtime import runtime

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
            {**NOOP, "labels": {"n": "3"}},
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


def test_an_invalid_item_refuses_the_batch_naming_it(make_app) -> None:
    client = make_app().test_client()
    fields = _batch(client, [NOOP, {"target": "not a host", "collectors": ["noop"]}])
    assert fields.status_code == 422, fields.json
    assert "target" in fields.json["errors"]["jobs"]["1"]
    # what only the registry knows: an unknown collector, options a collector refuses
    resp = _batch(
        client,
        [
            {"target": "example.org", "collectors": ["nope"]},
            NOOP,
            {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"x": 1}}},
        ],
    )
    assert resp.status_code == 422, resp.json
    errors = resp.json["errors"]["jobs"]
    assert set(errors) == {"0", "2"}
    assert "collectors" in errors["0"]
    assert "options" in errors["2"]
    assert client.get("/v1/jobs").json["items"] == []  # nothing was submitted


def test_over_the_max_empty_or_keyed_batch_is_422(make_app) -> None:
    client = make_app(COLLECTQ_BATCH_MAX="2").test_client()
    over = _batch(client, [NOOP, NOOP, NOOP])
    assert over.status_code == 422
    assert "jobs" in over.json["errors"]
    assert _batch(client, []).status_code == 422
    assert _batch(client, [NOOP, "not an object"]).status_code == 422  # not a batch of jobs
    keyed = _batch(client, [NOOP], **{"Idempotency-Key": "k"})
    assert keyed.status_code == 422
    assert "Idempotency-Key" in keyed.json["errors"]
    assert client.get("/v1/jobs").json["items"] == []  # nothing of a refused batch was queued


def test_quota_per_item_and_a_batch_of_n_is_n_submits(make_app) -> None:
    app = make_app(COLLECTQ_MAX_QUEUED_JOBS="2", COLLECTQ_RATE_LIMIT_SUBMIT="5/minute")
    token = runtime(app).keys.create(owner="a", name="n", scopes=["jobs:write", "jobs:read"])[1]
    client = app.test_client(api_key=token)
    jobs = [{**NOOP, "labels": {"n": str(i)}} for i in range(3)]
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
