"""Sentry, for real: a loopback HTTP server stands in for Sentry's ingest endpoint.

The API (gunicorn) and a worker process run with ``COLLECTQ_SENTRY_DSN`` pointing at it;
an unexpected error in each arrives as an event with the request id and no secret.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from app.errortracking import FILTERED, scrub_event
from app.rediskeys import RedisKeys
from app.scrub import scrub_text
from tests.apiprocess import running_api
from tests.conftest import REDIS_URL, wait_for

pytestmark = pytest.mark.integration

# Secrets a request and a crashing collector put in front of Sentry; none may arrive.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZW50cnktdGVzdCJ9.c2lnbmF0dXJlLW9mLXRlc3Q"
URL_PASSWORD = "hunter2-url-password"
QUERY_TOKEN = "qs-token-value"
COOKIE = "cookie-secret-value"


class Ingest:
    """Envelopes received, decoded (gzip, brotli) and split into (item header, payload)."""

    def __init__(self) -> None:
        self.raw: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, body: bytes) -> None:
        text = body.decode()
        lines = text.split("\n")
        events = []
        i = 1  # line 0: the envelope header
        while i + 1 < len(lines):
            header = json.loads(lines[i])
            if "length" in header:  # a sized payload may hold newlines
                rest = "\n".join(lines[i + 1 :]).encode()
                payload, tail = rest[: header["length"]], rest[header["length"] + 1 :]
                lines = lines[: i + 1] + [payload.decode()] + tail.decode().split("\n")
            if header.get("type") == "event":
                events.append(json.loads(lines[i + 1]))
            i += 2
        with self._lock:
            self.raw.append(text)
            self.events.extend(events)

    def event(self, **tags: str) -> dict[str, Any] | None:
        with self._lock:
            for event in self.events:
                if all(event.get("tags", {}).get(k) == v for k, v in tags.items()):
                    return event
        return None


@contextmanager
def sentry_ingest() -> Iterator[tuple[Ingest, str]]:
    ingest = Ingest()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            encoding = self.headers.get("Content-Encoding")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "br":  # sentry-sdk prefers brotli when the package is installed
                import brotli

                body = brotli.decompress(body)
            ingest.add(body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ingest, f"http://public@127.0.0.1:{server.server_address[1]}/1"
    finally:
        server.shutdown()
        server.server_close()


def test_api_and_worker_errors_reach_sentry_tagged_and_scrubbed(
    service_env: dict[str, str], start_worker, tmp_path: Path
) -> None:
    api_rid, worker_rid = (f"sentry-{uuid.uuid4().hex[:12]}" for _ in range(2))
    cookie = {"Cookie": f"session={COOKIE}"}
    with (
        sentry_ingest() as (ingest, dsn),
        running_api({**service_env, "COLLECTQ_SENTRY_DSN": dsn}, tmp_path) as api,
    ):
        # a prefork pool: the pool process that runs the task starts its own client
        start_worker("collect.flaky", concurrency=1,
                     COLLECTQ_WORKER_POOL="prefork", COLLECTQ_SENTRY_DSN=dsn)  # fmt: skip
        api.wait_ready()
        # the worker: a collector with a bug (not a CollectorError) that says too much
        bug = f"boom at http://admin:{URL_PASSWORD}@127.0.0.1/x?token={QUERY_TOKEN} {JWT}"
        body = {"target": "http://127.0.0.1/", "collectors": ["flaky"],
                "options": {"flaky": {"bug": bug}}}  # fmt: skip
        status, job, _ = api.call("POST", "/v1/jobs", body, {"X-Request-ID": worker_rid, **cookie})
        assert status == 202, job
        done = api.wait(job["id"])
        assert done["results"]["flaky"]["error"]["type"] == "collector_crashed", done
        # the API: a record Redis holds with the wrong type (a corrupted store)
        client = redis.Redis.from_url(REDIS_URL)
        key = RedisKeys(service_env["COLLECTQ_REDIS_PREFIX"]).job(job["id"])
        client.delete(key)
        client.set(key, "not a hash")
        path = f"/v1/jobs/{job['id']}?access_token={QUERY_TOKEN}"
        status, problem, _ = api.call("GET", path, headers={"X-Request-ID": api_rid, **cookie})
        assert status == 500, problem
        api_event = wait_for(lambda: ingest.event(request_id=api_rid), timeout=10)
        worker_event = wait_for(lambda: ingest.event(request_id=worker_rid), timeout=10)

    print(f"\nSentry: {len(ingest.raw)} envelopes, {len(ingest.events)} events")
    for event in (api_event, worker_event):
        value = event["exception"]["values"][-1]["value"]
        print(f"  {event['tags']} {event['logger']}: {value[:100]}")
        assert event["release"] == "collectq@0.1.0"
        assert event["environment"] == "test"
    assert "WRONGTYPE" in api_event["exception"]["values"][-1]["value"]
    headers = api_event["request"]["headers"]
    assert headers["Authorization"] == FILTERED
    assert headers["X-Request-Id"] == api_rid
    assert worker_event["tags"]["job_id"] == job["id"]
    assert worker_event["tags"]["collector"] == "flaky"
    assert "boom at http://admin:***@127.0.0.1/x?token=***" in json.dumps(worker_event)
    everything = "\n".join(ingest.raw)
    for secret in (api.token, api.token[3:], JWT, URL_PASSWORD, QUERY_TOKEN, COOKIE):
        assert secret not in everything


def test_scrubber_hides_every_secret_form() -> None:
    token = "cq_abcdefghijkl_" + "A" * 36
    text = (
        f"Authorization: Bearer {token}\nX-API-Key: {token}\nCookie: sess=1; b=2\n"
        f"sent {token} and Bearer pw0 and {JWT} to redis://:pw1@r:6379/0, amqp://u:pw2@mq//, "
        "https://x/?a=1&password=pw3&api_key=pw4 with client_secret=pw5"
    )
    scrubbed = scrub_text(text)
    for secret in (token, JWT, "pw0", "pw1", "pw2", "pw3", "pw4", "pw5", "sess=1"):
        assert secret not in scrubbed, scrubbed
    assert "https://x/?a=1&password=***&api_key=***" in scrubbed
    assert "amqp://u:***@mq//" in scrubbed
    event = {
        "request": {
            "headers": {"X-Api-Key": "k", "Accept": "*/*"},
            "data": {"target": "t"},
            "cookies": {"s": "v"},
        },
        "breadcrumbs": {"values": [{"message": f"GET https://u:pw6@h/ with {token}"}]},
    }
    out = scrub_event(event)
    assert out["request"] == {"headers": {"X-Api-Key": FILTERED, "Accept": "*/*"}}
    assert (
        out["breadcrumbs"]["values"][0]["message"]
        == "GET https://u:***@h/ with cq_abcdefghijkl_***"
    )


def test_sentry_off_without_a_dsn(make_app) -> None:
    import sentry_sdk

    make_app()
    assert not sentry_sdk.get_client().is_active()
