"""/v1/schedules in-process: create/list/get/update/delete/pause/resume/run, 422s naming
the field, owner isolation, a tick fired once, the runs list (real Redis and RabbitMQ)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.runtime import runtime
from app.schedules import service
from tests.conftest import FIXTURE_LIMITS

pytestmark = pytest.mark.integration

BODY: dict[str, Any] = {
    "name": "noop every minute",
    "job": {"target": "http://127.0.0.1:9/", "collectors": ["noop"]},
    "trigger": {"interval": 60},
}


def _other_client(app: Any) -> Any:
    _, token = runtime(app).keys.create(
        owner="other",
        name="other",
        scopes=["schedules:read", "schedules:write", "jobs:read"],
        rate_limits=FIXTURE_LIMITS,
    )
    return app.test_client(api_key=token)


def test_schedule_lifecycle(make_app: Any) -> None:
    app = make_app()
    c = app.test_client()
    r = c.post("/v1/schedules", json=BODY)
    assert r.status_code == 201, r.json
    sid = r.json["id"]
    assert r.headers["Location"] == f"/v1/schedules/{sid}"
    assert r.json["next_fire_at"] is not None
    assert r.json["job"]["collectors"] == ["noop"]
    assert c.get(f"/v1/schedules/{sid}").json["trigger"] == {"interval": 60.0}
    assert [s["id"] for s in c.get("/v1/schedules").json["items"]] == [sid]

    r = c.patch(
        f"/v1/schedules/{sid}",
        json={"trigger": {"cron": "30 2 * * *"}, "timezone": "Europe/Berlin"},
    )
    assert r.status_code == 200, r.json
    assert r.json["trigger"] == {"cron": "30 2 * * *"}
    local = r.json["next_fire_at"]
    assert local.endswith("T00:30:00Z") or local.endswith("T01:30:00Z")  # 02:30 Berlin

    r = c.post(f"/v1/schedules/{sid}/pause")
    assert (r.status_code, r.json["paused"], r.json["next_fire_at"]) == (200, True, None)
    r = c.post(f"/v1/schedules/{sid}/resume")
    assert (r.status_code, r.json["paused"]) == (200, False)
    assert r.json["next_fire_at"] is not None

    assert c.delete(f"/v1/schedules/{sid}").status_code == 204
    assert c.get(f"/v1/schedules/{sid}").status_code == 404
    assert c.get("/v1/schedules").json["items"] == []


def test_another_api_process_reads_a_schedule_it_did_not_create(make_app: Any) -> None:
    """Each API process has its own Celery app: one that never saved a beat entry still
    shows the next fire time (it was a 500: redbeat's config is set only by an Entry)."""
    sid = make_app().test_client().post("/v1/schedules", json=BODY).json["id"]
    other = make_app().test_client()
    got = other.get(f"/v1/schedules/{sid}")
    assert got.status_code == 200, got.json
    assert got.json["next_fire_at"] is not None
    assert [s["id"] for s in other.get("/v1/schedules").json["items"]] == [sid]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"trigger": {"cron": "61 * * * *"}}, ("trigger", "cron")),
        ({"trigger": {"cron": "* * * * *", "interval": 60}}, ("trigger", "cron")),
        ({"trigger": {"interval": 5}}, ("trigger", "interval")),  # under the server's minimum
        ({"timezone": "Mars/Olympus"}, ("timezone",)),
        ({"window": {"start": "8am"}}, ("window", "start")),
        ({"jitter": -1}, ("jitter",)),
        ({"concurrency_policy": "wait"}, ("concurrency_policy",)),
        ({"trigger": {"cron": "* * * * 7"}}, ("trigger", "cron")),  # Celery: 0-6, or names
        ({"start_at": "2030-01-02T00:00:00"}, ("start_at",)),  # no offset
        (
            {"job": {"target": "http://127.0.0.1:9/", "collectors": ["nosuch"]}},
            ("job", "collectors"),
        ),
        ({"every": 60}, ("every",)),
    ],
)
def test_invalid_schedule_is_422_naming_the_field(
    make_app: Any, change: dict[str, Any], where: tuple[str, ...]
) -> None:
    app = make_app(COLLECTQ_SCHEDULE_MIN_INTERVAL="60")
    r = app.test_client().post("/v1/schedules", json={**BODY, **change})
    assert r.status_code == 422, r.json
    errors = r.json["errors"]
    for key in where:
        assert key in errors, errors
        errors = errors[key]


def test_owners_see_only_their_schedules(make_app: Any) -> None:
    app = make_app()
    admin, other = app.test_client(), _other_client(app)
    mine = other.post("/v1/schedules", json=BODY).json["id"]
    theirs = admin.post("/v1/schedules", json=BODY).json["id"]
    assert [s["id"] for s in other.get("/v1/schedules").json["items"]] == [mine]
    for path in ("", "/runs"):
        assert other.get(f"/v1/schedules/{theirs}{path}").status_code == 404
    assert other.post(f"/v1/schedules/{theirs}/run").status_code == 404
    assert other.delete(f"/v1/schedules/{theirs}").status_code == 404
    assert {s["id"] for s in admin.get("/v1/schedules").json["items"]} == {mine, theirs}
    reader = app.test_client(
        api_key=runtime(app).keys.create(owner="other", name="r", scopes=["schedules:read"])[1]
    )
    assert reader.post("/v1/schedules", json=BODY).status_code == 403


def test_run_now_and_ticks_are_listed_once_each(make_app: Any) -> None:
    app = make_app()
    c = app.test_client()
    sid = c.post("/v1/schedules", json={**BODY, "max_concurrent": 2}).json["id"]
    r = c.post(f"/v1/schedules/{sid}/run")
    assert r.status_code == 202, r.json
    manual = r.json["id"]
    assert r.json["schedule_id"] == sid
    rt, celery = runtime(app), app.extensions["celery"]
    due = time.time() - 0.5
    with app.app_context():
        first = service.fire(rt, celery, sid, due)
        again = service.fire(rt, celery, sid, due)  # the same tick sent twice: fired once
        stale = service.fire(rt, celery, sid, due - 3600)
    assert first.outcome == "fired"
    assert first.lag is not None
    assert 0.5 <= first.lag < 5
    assert again.outcome is None
    assert stale.outcome == "missed"
    runs = c.get(f"/v1/schedules/{sid}/runs").json
    assert [(x["job_id"], x["trigger"]) for x in runs["items"]] == [
        (first.job_id, "schedule"),
        (manual, "manual"),
    ]
    assert runs["items"][0]["status"] == "queued"
    assert runs["items"][0]["due_at"] is not None
    page = c.get(f"/v1/schedules/{sid}/runs?limit=1").json
    assert len(page["items"]) == 1
    rest = c.get(f"/v1/schedules/{sid}/runs?limit=1&cursor={page['next_cursor']}").json
    assert [x["job_id"] for x in rest["items"]] == [manual]
    # max_concurrent 2, policy skip: the manual run and the first tick are still queued
    with app.app_context():
        busy = service.fire(rt, celery, sid, time.time())
    assert busy.outcome == "skipped_concurrency"


def test_queue_policy_window_and_finished_runs(make_app: Any) -> None:
    app = make_app()
    c = app.test_client()
    body = {**BODY, "concurrency_policy": "queue"}
    sid = c.post("/v1/schedules", json=body).json["id"]
    rt, celery = runtime(app), app.extensions["celery"]
    now = time.time()
    with app.app_context():
        first = service.fire(rt, celery, sid, now - 2)
        held = service.fire(rt, celery, sid, now - 1)  # the one tick that may wait
        extra = service.fire(rt, celery, sid, now)  # another waiting tick: skipped
        still = service.fire(rt, celery, sid, now - 1, queued=True)
        assert first.outcome == "fired"
        assert (held.outcome, held.retry_in) == (None, service.QUEUE_RETRY)
        assert extra.outcome == "skipped_concurrency"
        assert still.retry_in is not None  # the first run still holds the slot
        assert first.job_id is not None
        rt.store.cancel(first.job_id)  # final: the finalizer frees the slot
        service.run_finished(rt, rt.store.get(first.job_id) or {})
        started = service.fire(rt, celery, sid, now - 1, queued=True)
    assert started.outcome == "fired"
    assert started.lag is None  # a waited tick's delay is not beat's lag
    # a window that excludes every day but one that is not today: skipped
    today = time.strftime("%a", time.gmtime()).lower()
    other = next(d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d != today)
    r = c.patch(f"/v1/schedules/{sid}", json={"window": {"days": [other]}, "max_concurrent": 5})
    assert r.status_code == 200, r.json
    with app.app_context():
        assert service.fire(rt, celery, sid, time.time()).outcome == "skipped_window"
