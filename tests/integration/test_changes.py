"""Change detection on the real Redis: baselines, one change per changed run, repeated
finalizers, failures, runs finishing out of order, and the bounded history."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from app.changes import Change, ChangeLog, change_log, record_run
from app.jobs.ids import new_id
from app.metrics import SCHEDULE_CHANGES
from app.runtime import Runtime, runtime
from collectors import fingerprint as fp
from collectors.fingerprint import FingerprintOptions

pytestmark = pytest.mark.integration

SCHEDULE = "s_TEST"


@pytest.fixture
def rt(make_app: Callable[..., Any]) -> Runtime:
    return runtime(make_app(COLLECTQ_CHANGE_HISTORY_MAX="3"))


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
