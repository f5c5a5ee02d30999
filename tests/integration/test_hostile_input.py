"""Hostile and malformed requests: always a 4xx problem+json naming the cause, nothing written.

Every JSON-taking route reads its body through one strict loader (`api.requests`): UTF-8
only, a nesting-depth limit, no duplicate keys, numbers within 64-bit / double range, no
NaN/Infinity, no lone surrogates, an object at the top. Header values the API interprets
must be printable ASCII. None of these may reach a 5xx, and none may leave a record behind.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.rediskeys import RedisKeys
from app.runtime import runtime

pytestmark = pytest.mark.integration

JOB = '{"target": "example.org", "collectors": ["noop"]}'
DEEP = 5_000


def _job(**fields: str) -> str:
    """A job body with raw JSON text spliced in per field."""
    base = {"target": '"example.org"', "collectors": '["noop"]', **fields}
    return "{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}"


def _nested_objects(depth: int) -> str:
    return '{"a": ' * depth + '"x"' + "}" * depth


# (id, raw body, words the detail must contain)
HOSTILE_BODIES: list[tuple[str, bytes | str, tuple[str, ...]]] = [
    ("deep-labels", _job(labels=_nested_objects(DEEP)), ("nest", "deep")),
    ("deep-options", _job(options='{"noop": ' + _nested_objects(DEEP) + "}"), ("nest", "deep")),
    ("deep-arrays-body", "[" * 100_000 + "]" * 100_000, ("nest", "deep")),
    ("deep-arrays-unclosed", "[" * 100_000, ("nest", "deep")),
    ("deep-in-string-is-fine-but-dup", '{"a": "[[[[", "a": 1}', ("duplicate", "'a'")),
    ("huge-float", _job(labels='{"k": 1e400}'), ("number",)),
    ("huge-negative-float", _job(options='{"noop": {"x": -1e400}}'), ("number",)),
    ("huge-int", _job(labels='{"k": ' + "9" * 10_000 + "}"), ("number",)),
    ("huge-int-top-level-field", _job(target="1" + "0" * 5_000), ("number",)),
    ("int-over-64-bit", _job(options='{"noop": {"x": 18446744073709551616}}'), ("number",)),
    ("nan", _job(labels='{"k": NaN}'), ("NaN",)),
    ("infinity", _job(options='{"noop": {"x": -Infinity}}'), ("Infinity",)),
    ("invalid-utf8", b'{"target": "example.org\xff", "collectors": ["noop"]}', ("UTF-8",)),
    (
        "utf8-encoded-surrogate",
        b'{"target": "example.org", "collectors": ["noop"], "labels": {"k": "\xed\xa0\x80"}}',
        ("UTF-8",),
    ),
    ("utf16-body", JOB.encode("utf-16"), ("UTF-8",)),
    ("lone-surrogate-in-target", _job(target='"https://example.org/\\ud800"'), ("surrogate",)),
    ("lone-surrogate-in-label", _job(labels='{"k": "\\udfff"}'), ("surrogate",)),
    ("lone-surrogate-in-key", '{"\\ud800": 1}', ("surrogate",)),
    ("lone-surrogate-in-array", _job(collectors='["noop\\ud800"]'), ("surrogate",)),
    ("duplicate-key", _job(target='"a.org", "target": "b.org"'), ("duplicate", "'target'")),
    ("duplicate-nested-key", _job(labels='{"k": "1", "k": "2"}'), ("duplicate", "'k'")),
    ("array", "[]", ("object", "array")),
    ("string", '"hello"', ("object", "string")),
    ("number", "42", ("object", "number")),
    ("null", "null", ("object", "null")),
    ("boolean", "true", ("object", "boolean")),
    ("truncated", '{"target": "example.org", "coll', ("malformed",)),
    ("trailing-garbage", JOB + " x", ("malformed",)),
    ("bom", b"\xef\xbb\xbf" + JOB.encode(), ("malformed",)),
    ("whitespace-only", "   ", ("malformed",)),
]


def _state(app: Any) -> set[bytes]:
    """Every key of this deployment except the rate-limit counters and the key audit trail's
    networks and events (they count any request: the first use from an address is one)."""
    settings = runtime(app).settings
    redis = runtime(app).redis
    names = RedisKeys(settings.redis_prefix)
    per_request = tuple(
        n.encode()
        for n in (names.rate_limits, names.api_key_networks(""), names.api_key_events(""))
    )
    return {
        k for k in redis.scan_iter(f"{settings.redis_prefix}*") if not k.startswith(per_request)
    }


def _assert_problem(resp: Any, words: tuple[str, ...], status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.data[:300])
    assert resp.mimetype == "application/problem+json"
    body: dict[str, Any] = resp.get_json()
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["detail"].lower(), body["detail"]
    return body


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app()


@pytest.fixture
def rotatable(app: Any) -> str:
    key, _ = runtime(app).keys.create(owner="victim", name="r", scopes=["jobs:read"])
    return str(key.prefix)


@pytest.mark.parametrize(
    ("body", "words"), [(b, w) for _, b, w in HOSTILE_BODIES], ids=[i for i, _, _ in HOSTILE_BODIES]
)
def test_hostile_job_bodies_are_4xx_and_write_nothing(app: Any, body: Any, words: Any) -> None:
    client = app.test_client()
    before = _state(app)
    resp = client.post("/v1/jobs", data=body, content_type="application/json")
    problem = _assert_problem(resp, words)
    assert problem["type"].endswith("/invalid_json"), problem
    assert _state(app) == before  # no job, no index entry, no idempotency key, no quota entry


ROUTE_SAMPLES = [b for i, b, _ in HOSTILE_BODIES if i in {"deep-arrays-body", "deep-labels",
                 "huge-int", "invalid-utf8", "lone-surrogate-in-key", "duplicate-key", "array",
                 "null", "nan"}]  # fmt: skip


@pytest.mark.parametrize("path", ["/collect", "/v1/keys", "/v1/keys/{prefix}/rotate"])
def test_every_json_route_uses_the_strict_loader(app: Any, rotatable: str, path: str) -> None:
    client = app.test_client()
    before = _state(app)
    for body in ROUTE_SAMPLES:
        resp = client.post(
            path.format(prefix=rotatable), data=body, content_type="application/json"
        )
        assert resp.status_code == 400, (path, body[:40], resp.data[:300])
        assert resp.mimetype == "application/problem+json"
        assert resp.get_json()["type"].endswith("/invalid_json")
    assert _state(app) == before


def test_a_good_body_still_passes(app: Any, rotatable: str) -> None:
    client = app.test_client()
    nested = _nested_objects(30)  # within the depth limit
    body = _job(options='{"noop": {}}', labels='{"k": "\\u00e9\\ud83d\\ude00"}')
    resp = client.post("/v1/jobs", data=body, content_type="application/json")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["labels"] == {"k": "é😀"}  # a surrogate *pair* is one character
    deep_ok = client.post("/v1/jobs", data=_job(labels=nested), content_type="application/json")
    assert deep_ok.status_code == 422  # parsed (not too deep); labels must be strings
    assert client.post(f"/v1/keys/{rotatable}/rotate").status_code == 201  # no body is fine


@pytest.mark.parametrize("path", ["/v1/jobs", "/collect", "/v1/keys"])
@pytest.mark.parametrize(
    ("content_type", "body"),
    [(None, b""), ("application/json", b""), ("text/plain", b"")],
    ids=["no-type", "json", "text"],
)
def test_empty_body_is_400_where_a_body_is_required(
    app: Any, path: str, content_type: str | None, body: bytes
) -> None:
    before = _state(app)
    resp = app.test_client().post(path, data=body, content_type=content_type)
    _assert_problem(resp, ("empty",))
    assert _state(app) == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_wrong_content_type_is_415(app: Any, content_type: str | None) -> None:
    before = _state(app)
    resp = app.test_client().post("/v1/jobs", data=JOB, content_type=content_type)
    _assert_problem(resp, ("application/json",), status=415)
    assert _state(app) == before


@pytest.mark.parametrize("value", ["\ud800", "k\udfffk", "ké", "k\x00k", "k\x7fk"])
def test_idempotency_key_must_be_printable_ascii(app: Any, value: str) -> None:
    before = _state(app)
    resp = app.test_client().post(
        "/v1/jobs", data=JOB, content_type="application/json", headers={"Idempotency-Key": value}
    )
    _assert_problem(resp, ("Idempotency-Key", "ASCII"))
    assert _state(app) == before


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
@pytest.mark.parametrize("value", ["Bearer cq_\ud800", "Bearer cq_\udc00x", "Bearer cq_é"])
def test_credentials_must_be_printable_ascii(app: Any, header: str, value: str) -> None:
    if header == "X-API-Key":
        value = value.removeprefix("Bearer ")
    client = app.test_client(api_key="")
    before = _state(app)
    resp = client.post(
        "/v1/jobs", data=JOB, content_type="application/json", headers={header: value}
    )
    body = _assert_problem(resp, (header, "ASCII"), status=401)
    assert "WWW-Authenticate" in resp.headers
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert _state(app) == before


@pytest.mark.parametrize("value", ["\ud800", "abc\n", "abc\r\nSet-Cookie: x=1", "a" * 129, ""])
def test_bad_request_ids_are_replaced_never_echoed(app: Any, value: str) -> None:
    client = app.test_client()
    resp = client.get("/health", environ_overrides={"HTTP_X_REQUEST_ID": value})
    assert resp.status_code == 200, resp.data
    echoed = resp.headers["X-Request-ID"]
    assert echoed != value
    assert len(echoed) == 24
    assert echoed.isalnum()


def test_a_jwt_with_a_lone_surrogate_is_401_not_500(make_app: Any) -> None:
    secret = base64.urlsafe_b64encode(b"s" * 32).rstrip(b"=").decode()
    app = make_app(
        COLLECTQ_JWT_KEYS=json.dumps({"keys": [{"kid": "k1", "alg": "HS256", "k": secret}]}),
        COLLECTQ_JWT_ISSUER="https://idp.example.invalid",
        COLLECTQ_JWT_AUDIENCE="collectq",
    )
    client = app.test_client(api_key="")
    for token in ("eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.\ud800.x", "a.b\udc00.c"):
        resp = client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        _assert_problem(resp, ("Authorization", "ASCII"), status=401)
