"""The API's cache of verified key records (KEY_CACHE_TTL) and the rate limiter's folded
window reads: fewer round trips, and still what the uncached path answers."""

from __future__ import annotations

import time

import pytest
import redis

from app.auth.apikeys import KeyStore, parse_token
from app.runtime import runtime
from benchmarks.roundtrips import count_round_trips
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

READ = ["jobs:read"]


def test_a_revocation_elsewhere_takes_effect_within_the_ttl_here_at_once(make_app) -> None:
    app = make_app(COLLECTQ_KEY_CACHE_TTL="2")
    keys = runtime(app).keys
    _, token = keys.create(owner="ci", name="cached", scopes=READ)
    client = app.test_client(api_key=token)
    assert client.get("/v1/jobs").status_code == 200
    # another API process (its own store, its own cache) revokes the key
    elsewhere = KeyStore(redis.Redis.from_url(REDIS_URL), keys.names.prefix)
    elsewhere.revoke(parse_token(token))
    revoked_at = time.monotonic()
    assert client.get("/v1/jobs").status_code == 200  # this process has not read it yet
    # The record was cached before the revocation, so no request started more than the TTL
    # after it may still pass (start times: a slow machine's slow answers do not count).
    last_ok = revoked_at
    while True:
        started = time.monotonic()
        status = client.get("/v1/jobs").status_code
        if status == 401:
            break
        assert status == 200
        last_ok = started
        assert started - revoked_at < 10, "the revocation was never seen"
        time.sleep(0.05)
    assert last_ok - revoked_at <= 2.0  # the TTL
    # a revocation in this process is seen at once
    _, token2 = keys.create(owner="ci", name="cached2", scopes=READ)
    client2 = app.test_client(api_key=token2)
    assert client2.get("/v1/jobs").status_code == 200
    keys.revoke(parse_token(token2))
    assert client2.get("/v1/jobs").status_code == 401


def test_a_cached_key_costs_no_round_trip_and_keeps_its_checks(make_app) -> None:
    app = make_app(COLLECTQ_KEY_CACHE_TTL="5")
    keys = runtime(app).keys
    _, token = keys.create(owner="ci", name="cached", scopes=READ)
    client = app.test_client(api_key=token)
    assert client.get("/v1/jobs?limit=1").status_code == 200
    with count_round_trips() as counts:
        resp = client.get("/v1/jobs?limit=1")
    assert resp.status_code == 200
    assert "HGETALL" not in counts  # the key record came from the cache
    # the same token with a wrong secret is still refused (the hash is compared each time)
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    assert app.test_client(api_key=wrong).get("/v1/jobs").status_code == 401
    # a write scope the cached record lacks is still a 403
    assert (
        client.post("/v1/jobs", json={"target": "x.example", "collectors": ["http"]}).status_code
        == 403
    )


def test_rate_limit_headers_come_from_the_hit_and_match_the_window(make_app) -> None:
    app = make_app()
    keys = runtime(app).keys
    _, token = keys.create(
        owner="ci", name="limited", scopes=READ, rate_limits={"read": "5/minute"}
    )
    client = app.test_client(api_key=token)
    remaining = []
    for _ in range(6):
        with count_round_trips() as counts:
            resp = client.get("/v1/jobs?limit=1")
        assert not {"GET", "TTL"} & set(counts)  # the headers need no read of their own
        remaining.append(resp.headers.get("RateLimit-Remaining"))
        assert resp.headers["RateLimit-Limit"] == "5"
        assert 0 < int(resp.headers["RateLimit-Reset"]) <= 60
    assert remaining == ["4", "3", "2", "1", "0", "0"]
    assert resp.status_code == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60


def test_an_api_with_rate_limits_off_serves_without_limit_headers(make_app) -> None:
    app = make_app(COLLECTQ_RATE_LIMIT_ENABLED="false", COLLECTQ_ALLOW_NO_RATE_LIMIT="true")
    resp = app.test_client().get("/v1/jobs?limit=1")
    assert resp.status_code == 200
    assert "RateLimit-Limit" not in resp.headers
