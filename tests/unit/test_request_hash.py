"""Canonical hashes of job requests (app.jobs.reuse): what counts as the same request."""

from __future__ import annotations

from app.jobs.reuse import identity_hash, request_hash


def test_request_hash_ignores_key_order_only() -> None:
    a = {"target": "example.org", "collectors": ["http"], "options": {"http": {"a": 1, "b": 2}}}
    b = {"options": {"http": {"b": 2, "a": 1}}, "collectors": ["http"], "target": "example.org"}
    assert request_hash(a) == request_hash(b)
    assert request_hash(a) != request_hash({**a, "labels": {"x": "1"}})
    assert request_hash(a) != request_hash({**a, "max_age": 60})


def test_identity_is_what_is_collected() -> None:
    base = identity_hash("example.org", ["http", "dns"], {"http": {"timeout": 5}})
    # collector order, options of collectors the job does not run: same work
    assert base == identity_hash(
        "example.org", ["dns", "http"], {"http": {"timeout": 5}, "tls": {"port": 1}}
    )
    # an empty options object is the defaults, like no options
    assert identity_hash("example.org", ["dns"], {}) == identity_hash(
        "example.org", ["dns"], {"dns": {}}
    )
    assert base != identity_hash("example.org", ["http", "dns"], {"http": {"timeout": 6}})
    assert base != identity_hash("example.net", ["http", "dns"], {"http": {"timeout": 5}})
    assert base != identity_hash("example.org", ["http"], {"http": {"timeout": 5}})
    hooked = identity_hash(
        "example.org", ["http", "dns"], {"http": {"timeout": 5}}, callback_url="https://h.example"
    )
    assert base != hooked  # another push target: another job
