"""Live events over SSE from a real API process (gunicorn, gevent worker) and a real worker.

A job whose collector fails once (a retry) streams every state change of its collector and
then `done`; `Last-Event-ID` resumes exactly after an event; another owner gets a 404;
/v1/events carries a job submitted while it is open; `?wait=` answers from the same hub.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.apiprocess import RunningApi, running_api
from tests.conftest import FIXTURE_LIMITS, REDIS_URL

pytestmark = pytest.mark.integration


@contextmanager
def _open(api: RunningApi, path: str, token: str, last_id: str | None = None) -> Iterator[Any]:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=15)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    try:
        conn.request("GET", path, headers=headers)
        yield conn.getresponse()
    finally:
        conn.close()


def _events(resp: Any, until: str = "done", limit: float = 15) -> list[dict[str, Any]]:
    """Events (id, event, data) read until an `until` event or the stream's end."""
    out: list[dict[str, Any]] = []
    frame: dict[str, Any] = {}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            break  # the server closed the stream
        text = line.decode().rstrip("\n")
        if text == "":
            if "event" in frame:
                out.append(frame)
                if frame["event"] == until:
                    return out
            frame = {}
        elif not text.startswith(":"):
            name, _, value = text.partition(": ")
            frame[name] = json.loads(value) if name == "data" else value
    return out


def test_a_jobs_events_stream_live_resume_and_owner_scope(
    service_env: dict[str, str], start_worker: Any, tmp_path: Path
) -> None:
    from app.auth.apikeys import KeyStore

    with running_api(service_env, tmp_path) as api:
        start_worker("collect.noop,collect.flaky", concurrency=2)
        api.wait_ready()
        # the flaky collector fails once (retrying), sleeping a moment on each attempt
        body = {
            "target": "a.org",
            "collectors": ["flaky"],
            "options": {"flaky": {"fail_times": 1, "sleep": 0.3}},
        }
        status, job, _ = api.call("POST", "/v1/jobs", body)
        assert status == 202, job
        path = f"/v1/jobs/{job['id']}/events"
        with _open(api, path, api.token) as resp:
            assert resp.status == 200
            assert resp.getheader("Content-Type").startswith("text/event-stream")
            events = _events(resp)
            assert resp.readline() == b""  # closed after `done`
        states = [(e["data"]["status"], e["data"]["attempt"]) for e in events[:-1]]
        assert states == [
            ("queued", 0),
            ("running", 1),
            ("retrying", 1),
            ("running", 2),
            ("succeeded", 2),
        ]
        assert all(e["event"] == "state" and e["data"]["collector"] == "flaky" for e in events[:-1])
        assert events[-1]["event"] == "done"
        assert events[-1]["data"]["status"] == "succeeded"
        ids = [e["id"] for e in events]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

        # resume after the third event: exactly the rest; a finished job ends at once
        with _open(api, path, api.token, last_id=ids[2]) as resp:
            assert [e["id"] for e in _events(resp)] == ids[3:]

        # another owner: 404 (as GET /v1/jobs/{id}); a malformed id too
        keys = KeyStore(redis.Redis.from_url(REDIS_URL), service_env["COLLECTQ_REDIS_PREFIX"])
        _, other = keys.create(
            owner="other", name="o", scopes=["jobs:read", "jobs:write"], rate_limits=FIXTURE_LIMITS
        )
        with _open(api, path, other) as resp:
            assert resp.status == 404
            assert resp.getheader("Content-Type") == "application/problem+json"
        with _open(api, "/v1/jobs/nope/events", api.token) as resp:
            assert resp.status == 404

        # /v1/events of `other`: its own new job's events arrive, the admin's job's do not
        with _open(api, "/v1/events", other) as resp:
            assert resp.status == 200
            resp.readline()  # `retry:` — the stream is open: subscribed
            noop = {"target": "b.org", "collectors": ["noop"]}
            assert api.call("POST", "/v1/jobs", noop)[0] == 202  # the admin's (owner tests)
            headers = {"Authorization": f"Bearer {other}"}
            status, mine, _ = api.call("POST", "/v1/jobs", noop, headers)
            assert status == 202
            seen = _events(resp)
        assert {e["data"]["job_id"] for e in seen} == {mine["id"]}
        assert seen[-1]["data"]["status"] == "succeeded"

        # ?wait= waits on the same hub: answered when the job ends, not at the budget
        status, slow, _ = api.call("POST", "/v1/jobs", {**body, "options": {"flaky": {"sleep": 1}}})
        started = time.monotonic()
        status, env, _ = api.call("GET", f"/v1/jobs/{slow['id']}?wait=8")
        assert (status, env["status"]) == (200, "succeeded")
        assert time.monotonic() - started < 6


def test_the_hub_reads_only_while_someone_waits() -> None:
    """The hub's reader (real Redis) stops after the last subscription leaves and starts
    again, from the stream's end, with the next one: events written while nobody waited
    are not read, and a later subscription hears the events after it."""
    from app.events.hub import BLOCK_MS, EventHub

    key = f"cq-test-hub:{time.time_ns()}"
    client = redis.Redis.from_url(REDIS_URL)
    hub = EventHub(lambda: client, key, linger=0.5)
    try:
        assert not hub.reading
        with hub.subscribe(job_id="j_1") as sub:
            assert hub.reading
            client.xadd(key, {"job": "j_1", "owner": "o", "status": "running"})
            assert [e.status for e in sub.take(5)] == ["running"]
        deadline = time.monotonic() + 0.5 + BLOCK_MS / 1000 + 3
        while hub.reading and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not hub.reading, "the reader kept reading with no subscription"
        client.xadd(key, {"job": "j_1", "owner": "o", "status": "unheard"})
        with hub.subscribe(job_id="j_1") as sub:
            assert hub.reading
            client.xadd(key, {"job": "j_1", "owner": "o", "status": "succeeded"})
            assert [e.status for e in sub.take(5)] == ["succeeded"]
    finally:
        client.delete(key)
