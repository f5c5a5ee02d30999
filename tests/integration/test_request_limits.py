"""Routes and resources a client must not get: Flask's /static, unbounded `?wait=` long-polls."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app.events.hub import Subscription
from app.jobs.events import Event
from app.rediskeys import RedisKeys
from app.runtime import runtime
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

JOB = {"target": "example.org", "collectors": ["noop"]}


def test_no_static_route_serves_the_working_directory(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.env").write_text("COLLECTQ_SECRET_KEY=hunter2hunter2hunter2\n")
    (tmp_path / "secret.env").write_text("COLLECTQ_SECRET_KEY=hunter2hunter2hunter2\n")
    monkeypatch.chdir(tmp_path)  # Flask("collectq") roots its static folder at the cwd
    app = make_app()
    assert app.static_folder is None
    assert not [r for r in app.url_map.iter_rules() if r.endpoint == "static"]
    for client in (app.test_client(), app.test_client(api_key="")):
        for path in ("/static/secret.env", "/static/../secret.env", "/secret.env"):
            resp = client.get(path)
            assert resp.status_code == 404, (path, resp.data[:200])
            assert b"hunter2" not in resp.data
            assert resp.mimetype == "application/problem+json"


def _slots(app: Any, client_id: str) -> int:
    rt = runtime(app)
    key = RedisKeys(rt.settings.redis_prefix).wait_slots(client_id)
    return int(rt.redis.zcard(key))


def _client_id(app: Any) -> str:
    token = app.config["TEST_API_KEY"]
    return "key:" + token.split("_")[1]  # api.ratelimit.client_key: `key:<prefix>`


def _queued_job(client: Any) -> str:
    resp = client.post("/v1/jobs", json=JOB)  # no worker runs: the job stays queued
    assert resp.status_code == 202, resp.get_json()
    return str(resp.headers["Location"])


class _Sleepers:
    """Wraps Subscription.take to see which threads are inside a wait (`wait_job` waits on
    the event hub's subscription)."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self._take = Subscription.take

    def __call__(self, sub: Subscription, timeout: float) -> list[Event]:
        self.threads.add(threading.get_ident())
        return self._take(sub, timeout)


@pytest.fixture
def sleepers(monkeypatch: pytest.MonkeyPatch) -> _Sleepers:
    spy = _Sleepers()
    monkeypatch.setattr(Subscription, "take", lambda sub, timeout: spy(sub, timeout))
    return spy


def _waiters(
    app: Any, location: str, n: int, seconds: float, sleepers: _Sleepers
) -> tuple[list[int], list[Any]]:
    """`n` threads each long-polling `location`; returns once every one is waiting."""
    statuses: list[int] = []

    def wait() -> None:
        statuses.append(app.test_client().get(f"{location}?wait={seconds}").status_code)

    threads = [threading.Thread(target=wait) for _ in range(n)]
    for t in threads:
        t.start()
    wait_for(lambda: {t.ident for t in threads} <= sleepers.threads, timeout=10)
    return statuses, threads


def test_concurrent_waits_per_client_are_capped(make_app: Any, sleepers: _Sleepers) -> None:
    app = make_app(COLLECTQ_MAX_WAITS_PER_CLIENT="2", COLLECTQ_MAX_WAIT="30")
    client = app.test_client()
    location = _queued_job(client)
    statuses, threads = _waiters(app, location, 2, 3, sleepers)

    started = time.monotonic()
    refused = client.get(f"{location}?wait=3")
    assert refused.status_code == 429, refused.get_json()
    assert time.monotonic() - started < 1  # refused at once, not after holding a thread
    assert refused.mimetype == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    problem = refused.get_json()
    assert problem["limit"] == 2
    assert "wait" in problem["detail"]
    assert client.get(location).status_code == 200  # a plain read needs no slot
    # held slots free themselves if their API process dies: the key expires with the last
    rt = runtime(app)
    key = RedisKeys(rt.settings.redis_prefix).wait_slots(_client_id(app))
    assert 0 < rt.redis.pttl(key) <= 60_000  # the wait (3 s) and a grace, never forever

    # another key of the same owner has slots of its own
    _, other = runtime(app).keys.create(owner="tests", name="other", scopes=["admin"])
    assert app.test_client(api_key=other).get(f"{location}?wait=0.2").status_code == 200

    for t in threads:
        t.join(10)
    assert statuses == [200, 200]
    assert _slots(app, _client_id(app)) == 0  # released, not left to expire
    assert client.get(f"{location}?wait=0.2").status_code == 200


def test_a_submit_with_no_wait_slot_free_is_still_accepted(make_app: Any) -> None:
    app = make_app(COLLECTQ_MAX_WAITS_PER_CLIENT="1")
    client = app.test_client()
    rt = runtime(app)
    key = RedisKeys(rt.settings.redis_prefix).wait_slots(_client_id(app))
    rt.redis.zadd(key, {"busy": time.time() + 30})  # the client's one slot is taken

    started = time.monotonic()
    resp = client.post("/v1/jobs?wait=5", json={"target": "example.org", "collectors": ["noop"]})
    # the job is in the broker already: a 429 now would make the client submit it again
    assert resp.status_code == 202, resp.get_json()
    assert time.monotonic() - started < 2
    assert client.get(resp.headers["Location"]).get_json()["status"] == "queued"


def test_the_cap_is_shared_by_api_processes(make_app: Any, sleepers: _Sleepers) -> None:
    # two apps = two API processes on the same Redis and key prefix
    first = make_app(COLLECTQ_MAX_WAITS_PER_CLIENT="1")
    second = make_app(COLLECTQ_MAX_WAITS_PER_CLIENT="1")
    token = first.config["TEST_API_KEY"]
    location = _queued_job(first.test_client())
    statuses, threads = _waiters(first, location, 1, 2, sleepers)
    other_process = second.test_client(api_key=token)
    assert other_process.get(f"{location}?wait=2").status_code == 429
    for t in threads:
        t.join(10)
    assert statuses == [200]


def test_a_crashed_processs_slots_expire(make_app: Any) -> None:
    app = make_app(COLLECTQ_MAX_WAITS_PER_CLIENT="1")
    client = app.test_client()
    location = _queued_job(client)
    rt = runtime(app)
    key = RedisKeys(rt.settings.redis_prefix).wait_slots(_client_id(app))
    # a slot whose holder died: it expired a moment ago and was never released
    rt.redis.zadd(key, {"dead-process": time.time() - 1})
    assert client.get(f"{location}?wait=0.2").status_code == 200
    # a live one (holder still within its wait) counts
    rt.redis.zadd(key, {"live-process": time.time() + 30})
    assert client.get(f"{location}?wait=0.2").status_code == 429


def test_finished_or_unknown_jobs_take_no_slot(make_app: Any) -> None:
    app = make_app(COLLECTQ_MAX_WAITS_PER_CLIENT="1")
    client = app.test_client()
    location = _queued_job(client)
    rt = runtime(app)
    key = RedisKeys(rt.settings.redis_prefix).wait_slots(_client_id(app))
    rt.redis.zadd(key, {"busy": time.time() + 30})  # the client's one slot is taken
    assert client.get("/v1/jobs/j_00000000000000000000000000?wait=5").status_code == 404
    assert client.delete(location).status_code == 200  # cancelled: final
    assert client.get(f"{location}?wait=5").status_code == 200  # answered at once
    assert client.get(f"{location}?wait=0").status_code == 200
