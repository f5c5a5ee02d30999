"""Change detection on the real Redis: baselines, one change per changed run, repeated
finalizers, failures, runs finishing out of order, and the bounded history."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from werkzeug import Response

from app.changes import Change, ChangeLog, change_log, forget, record_run
from app.jobs.ids import new_id
from app.metrics import SCHEDULE_CHANGES
from app.runtime import Runtime, runtime
from app.schedules.service import schedule_store
from app.webhooks.finalize import finish
from collectors import fingerprint as fp
from collectors.fingerprint import FingerprintOptions
from tests.conftest import wait_for
from tests.integration.test_schedules_beat import BEAT_ENV, Beat
from tests.webhookreceiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

SCHEDULE = "s_TEST"


@pytest.fixture
def rt(make_app: Callable[..., Any]) -> Runtime:
    """A runtime whose Redis holds the schedule SCHEDULE (stored as the API would)."""
    rt = runtime(make_app(COLLECTQ_CHANGE_HISTORY_MAX="3"))
    job = {"target": "http://127.0.0.1:1/", "collectors": ["http"]}
    schedule_store(rt).create(SCHEDULE, "tests", {"job": job, "change_detection": None})
    return rt


def http_result(body: str, status: str = "succeeded", code: int = 200) -> dict[str, Any]:
    data = {
        "status_code": code,
        "headers": {"Date": time.strftime("%c")},  # differs on every run: not content
        "final_url": "http://127.0.0.1:1/",
        "content_type": "text/plain",
        "body_sha256": body * 64,
        "timing": {"total_ms": time.monotonic()},
    }
    if status != "succeeded":
        return {"status": status, "data": None, "error": {"type": "timeout"}}
    return {"status": status, "data": data, "error": None}


def envelope(job_id: str | None = None, schedule_id: str | None = SCHEDULE, **results: Any) -> Any:
    return {
        "id": job_id or new_id("j_"),
        "status": "succeeded",
        "schedule_id": schedule_id,
        "results": results,
    }


def changes(rt: Runtime, **kw: Any) -> list[dict[str, Any]]:
    return change_log(rt).list(SCHEDULE, limit=100, **kw)[0]


def counted(collector: str) -> float:
    return SCHEDULE_CHANGES.labels(collector)._value.get()


def test_first_run_is_the_baseline_and_a_changed_body_is_one_change(rt: Runtime) -> None:
    first = envelope(http=http_result("a"))
    assert record_run(rt, first) is None
    assert record_run(rt, envelope(http=http_result("a"))) is None  # same content, new Date
    before = counted("http")
    second = envelope(http=http_result("b"))
    change = record_run(rt, second)
    assert change is not None
    assert change.job_id == second["id"]
    assert change.schedule_id == SCHEDULE
    assert [(d["collector"], d["part"]) for d in change.diff] == [("http", "body_sha256")]
    assert change.diff[0]["before"] == "a" * 64
    assert change.diff[0]["after"] == "b" * 64
    assert [c["id"] for c in changes(rt)] == [change.id]
    assert counted("http") == before + 1


def test_a_repeated_finalizer_records_no_second_change(rt: Runtime) -> None:
    record_run(rt, envelope(http=http_result("a")))
    job = envelope(http=http_result("b"))
    before = counted("http")
    first = record_run(rt, job)
    again = record_run(rt, job)
    assert first is not None
    assert again == first  # the same change handed back (the webhook step may need it)
    assert len(changes(rt)) == 1
    assert counted("http") == before + 1
    # and a repeat of a job that changed nothing still changes nothing
    same = envelope(http=http_result("b"))
    assert record_run(rt, same) is None
    assert record_run(rt, same) is None
    assert len(changes(rt)) == 1


def test_a_failed_collector_keeps_the_last_good_fingerprint(rt: Runtime) -> None:
    good = envelope(http=http_result("a"))
    record_run(rt, good)
    assert record_run(rt, envelope(http=http_result("a", status="failed"))) is None
    assert record_run(rt, envelope(http=http_result("a"))) is None  # back: not a change
    assert changes(rt) == []
    last = envelope(http=http_result("a"))
    record_run(rt, last)
    changed = record_run(rt, envelope(http=http_result("c")))
    assert changed is not None
    assert changed.previous_job_id == last["id"]


def test_a_run_finishing_after_a_later_one_changes_nothing(rt: Runtime) -> None:
    now = time.time()
    first, older, newer = (new_id("j_", now=now - t) for t in (3, 2, 1))  # created in this order
    record_run(rt, envelope(first, http=http_result("a")))
    assert record_run(rt, envelope(newer, http=http_result("b"))) is not None
    assert record_run(rt, envelope(older, http=http_result("a"))) is None  # stale
    assert len(changes(rt)) == 1


def test_jobs_without_a_schedule_are_not_compared(rt: Runtime) -> None:
    assert record_run(rt, envelope(schedule_id=None, http=http_result("a"))) is None
    assert record_run(rt, envelope(schedule_id=None, http=http_result("b"))) is None
    assert rt.redis.keys(f"{rt.settings.redis_prefix}ch*") == []


def test_a_run_of_a_deleted_schedule_leaves_nothing_behind(rt: Runtime) -> None:
    record_run(rt, envelope(http=http_result("a")))
    schedule_store(rt).delete(SCHEDULE, "tests")
    forget(rt, SCHEDULE)  # as deleting it through the API does
    assert record_run(rt, envelope(http=http_result("b"))) is None
    assert rt.redis.keys(f"{rt.settings.redis_prefix}ch*:{SCHEDULE}") == []


def test_the_history_is_bounded_by_count_and_age(rt: Runtime) -> None:
    record_run(rt, envelope(http=http_result("0")))
    found = [record_run(rt, envelope(http=http_result(str(i)))) for i in range(1, 6)]
    ids = [c.id for c in found if c is not None]
    assert len(ids) == 5
    listed = changes(rt)
    assert [c["id"] for c in listed] == ids[:1:-1]  # the newest CHANGE_HISTORY_MAX = 3
    # pages: newest first, then the rest through the cursor
    log = change_log(rt)
    page, cursor = log.list(SCHEDULE, limit=2)
    assert [c["id"] for c in page] == [c["id"] for c in listed[:2]]
    assert cursor is not None
    rest, end = log.list(SCHEDULE, limit=2, cursor=cursor)
    assert [c["id"] for c in rest] == [listed[2]["id"]]
    assert end is None
    # older than CHANGE_HISTORY_MAX_AGE: not listed any more
    later = time.time() + rt.settings.change_history_max_age + 1
    assert log.list(SCHEDULE, limit=100, now=later)[0] == []


def test_old_changes_are_trimmed_at_the_next_change(rt: Runtime) -> None:
    log = ChangeLog(rt.redis, rt.store.keys, max_count=100, max_age=2, done_ttl=60)
    opts, no_artifact = FingerprintOptions(), lambda _name: None
    http = rt.registry.get("http")

    def run(body: str) -> Change | None:
        fps = {"http": http.fingerprint(http_result(body)["data"], opts, no_artifact)}
        return log.record(SCHEDULE, new_id("j_"), fps, lambda _c, b, a: fp.changed_parts(b, a))[0]

    stream = rt.store.keys.changes(SCHEDULE)
    run("a")
    b = run("b")
    start = time.monotonic()
    assert b is not None
    assert 0 < rt.redis.pttl(stream) <= 2000  # the history expires max_age after its last change
    time.sleep(1.2)  # the bound under test is time itself
    c = run("c")
    assert c is not None
    time.sleep(max(0.0, start + 2.2 - time.monotonic()))
    assert [x["id"] for x in log.list(SCHEDULE, limit=10)[0]] == [c.id]  # b is too old to list
    d = run("d")
    assert d is not None
    assert rt.redis.xlen(stream) == 2  # and b was trimmed with d's write
    assert [x["id"] for x in log.list(SCHEDULE, limit=10)[0]] == [d.id, c.id]


# ---------------------------------------------------------------------------------------
# Through the service: a real schedule, a real worker, a local page, the finalizer, the API


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def deliveries(client: Any, job_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/v1/jobs/{job_id}/deliveries")
    assert resp.status_code == 200, resp.json
    return list(resp.json["items"])


class Scheduled:
    """A paused schedule of `target` run on demand (run now), each run awaited to its end."""

    def __init__(self, app: Any, target: str, **extra: Any) -> None:
        self.client = app.test_client()
        self.rt = runtime(app)
        body = {
            "job": {"target": target, "collectors": ["http"]},
            "trigger": {"interval": 3600},
            "paused": True,  # runs only when asked: the test decides when content changes
            **extra,
        }
        created = self.client.post("/v1/schedules", json=body)
        assert created.status_code == 201, created.json
        self.id = str(created.json["id"])

    def run(self) -> str:
        resp = self.client.post(f"/v1/schedules/{self.id}/run")
        assert resp.status_code == 202, resp.json
        job_id = str(resp.json["id"])
        rt = self.rt
        # final, and its finalizer (change detection, webhooks) has run
        wait_for(
            lambda: (
                rt.store.status(job_id) == "succeeded"
                and rt.redis.zscore(rt.store.keys.finished, job_id) is None
            ),
            timeout=30,
        )
        return job_id

    def changes(self, **args: Any) -> Any:
        resp = self.client.get(f"/v1/schedules/{self.id}/changes", query_string=args)
        assert resp.status_code == 200, resp.json
        return resp.json


def test_pages_that_change_between_runs_make_one_change_and_one_webhook(
    make_app: Callable[..., Any], start_worker: Callable[..., Any], site: Any, receiver: Receiver
) -> None:
    app = make_app()
    client = app.test_client()
    start_worker(queues="collect.http,webhooks")
    page = {"body": "first version"}
    site.expect_request("/page").respond_with_handler(
        lambda _request: Response(page["body"], content_type="text/plain")
    )
    hook = {"url": f"{receiver.base}/hook", "on": ["change"]}
    schedule = Scheduled(app, site.url_for("/page"), callback=hook)
    sid, run = schedule.id, schedule.run

    jobs = [run(), run()]  # the same page twice: no change
    page["body"] = "second version"
    jobs += [run(), run()]  # the second version: one change, then none
    changed = jobs[2]

    listed = schedule.changes()
    assert len(listed["items"]) == 1
    (change,) = listed["items"]
    assert change["job_id"] == changed
    assert change["previous_job_id"] == jobs[1]
    assert [(d["collector"], d["part"]) for d in change["diff"]] == [("http", "body_sha256")]
    assert listed["next_cursor"] is None

    hooks = wait_for(lambda: receiver.on("/hook"), timeout=30)
    secret = client.get("/v1/webhooks/secret").json["secret"]
    payload = Webhook(secret).verify(hooks[0].body, hooks[0].headers)
    assert payload["type"] == "schedule.changed"
    assert payload["data"]["change"]["id"] == change["id"]
    assert payload["data"]["id"] == changed
    # deliveries are created by the finalizer, which each run() waited for: exactly one
    events = {j: [d["event"] for d in deliveries(client, j)] for j in jobs}
    assert events == {j: (["schedule.changed"] if j == changed else []) for j in jobs}
    assert len(receiver.on("/hook")) == 1

    # the finalizer of the changed run again (a redelivery): the same change, nothing new
    assert finish(runtime(app), app.extensions["celery"], changed) == []  # nothing published
    assert [c["id"] for c in schedule.changes()["items"]] == [change["id"]]
    assert [d["event"] for d in deliveries(client, changed)] == ["schedule.changed"]

    # another owner sees no such schedule; a bad cursor is a 422 naming it
    other = client.post(
        "/v1/keys", json={"owner": "someone-else", "name": "t", "scopes": ["schedules:read"]}
    )
    stranger = app.test_client(api_key=other.json["token"])
    assert stranger.get(f"/v1/schedules/{sid}/changes").status_code == 404
    bad = client.get(f"/v1/schedules/{sid}/changes?cursor=nope")
    assert bad.status_code == 422
    assert "cursor" in json.dumps(bad.json["errors"])

    # the schedule chooses what counts as content: here the ETag, with the same body
    etag = {"value": '"v1"'}
    site.expect_request("/doc").respond_with_handler(
        lambda _request: Response("same body", headers={"ETag": etag["value"]})
    )
    tagged = Scheduled(app, site.url_for("/doc"), change_detection={"http_headers": ["ETag"]})
    tagged.run()
    etag["value"] = '"v2"'
    retagged = tagged.run()
    (change,) = tagged.changes()["items"]
    assert change["job_id"] == retagged
    assert change["diff"] == [
        {"collector": "http", "part": "header:etag", "before": '"v1"', "after": '"v2"'}
    ]
    # a bad option is refused when the schedule is made, naming the field
    body = {
        "job": {"target": site.url_for("/doc"), "collectors": ["http"]},
        "trigger": {"interval": 3600},
        "change_detection": {"screenshot_hash": "fuzzy"},
    }
    refused = client.post("/v1/schedules", json=body)
    assert refused.status_code == 422
    assert "screenshot_hash" in json.dumps(refused.json["errors"])

    # deleting a schedule deletes its fingerprints and history
    assert client.delete(f"/v1/schedules/{sid}").status_code == 204
    keys = runtime(app).store.keys
    assert runtime(app).redis.exists(keys.changes(sid), keys.change_fingerprints(sid)) == 0


def test_scheduled_runs_by_beat_report_a_changed_page_once(
    make_app: Callable[..., Any],
    start_worker: Callable[..., Any],
    site: Any,
    receiver: Receiver,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The same through beat's ticks (a 1-second interval), not run-now."""
    beat = Beat({**service_env, **BEAT_ENV}, tmp_path / "beat.log")
    try:
        wait_for(lambda: "Acquired lock" in beat.text(), timeout=20, interval=0.1)
        start_worker(queues="maintenance,collect.http,webhooks")
        app = make_app(**BEAT_ENV)
        client, rt = app.test_client(), runtime(app)
        page = {"body": "version A"}
        site.expect_request("/tick").respond_with_handler(lambda _r: Response(page["body"]))
        hook = {"url": f"{receiver.base}/tick", "on": ["change"]}
        body = {
            "job": {"target": site.url_for("/tick"), "collectors": ["http"]},
            "trigger": {"interval": 1},
            "callback": hook,
        }
        created = client.post("/v1/schedules", json=body)
        assert created.status_code == 201, created.json
        sid = created.json["id"]

        def finished() -> list[str]:
            """Job ids of the schedule's runs whose finalizer ran, oldest first."""
            runs = client.get(f"/v1/schedules/{sid}/runs?limit=100").json["items"]
            ids = sorted(r["job_id"] for r in runs)
            return [
                j
                for j in ids
                if rt.store.is_terminal(rt.store.status(j))
                and rt.redis.zscore(rt.store.keys.finished, j) is None
            ]

        wait_for(lambda: len(finished()) >= 2, timeout=20, interval=0.1)
        page["body"] = "version B"
        seen = len(finished())
        wait_for(lambda: len(finished()) >= seen + 2, timeout=20, interval=0.1)
        assert client.post(f"/v1/schedules/{sid}/pause").status_code == 200
        # the runs already fired end too; then nothing moves any more
        started = {r["job_id"] for r in client.get(f"/v1/schedules/{sid}/runs").json["items"]}
        wait_for(lambda: set(finished()) == started, timeout=20, interval=0.1)
    finally:
        beat.stop()

    jobs = finished()
    envelopes = [rt.store.get(j) for j in jobs]
    bodies = [e["results"]["http"]["data"]["body_sha256"] for e in envelopes if e]
    assert len(bodies) == len(jobs)
    first_b = jobs[bodies.index(bodies[-1])]  # the first run that fetched version B
    assert bodies[0] != bodies[-1]
    (change,) = client.get(f"/v1/schedules/{sid}/changes").json["items"]
    assert change["job_id"] == first_b
    events = {j: [d["event"] for d in deliveries(client, j)] for j in jobs}
    assert events == {j: (["schedule.changed"] if j == first_b else []) for j in jobs}
    (hook,) = wait_for(lambda: receiver.on("/tick"), timeout=30)
    assert json.loads(hook.body)["data"]["change"]["id"] == change["id"]
