"""JWT over the API, CORS, security headers, input bounds, quota and rate limits (one app)."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import jwt
import pytest

from app.auth.apikeys import format_token, parse_token
from app.runtime import runtime

pytestmark = pytest.mark.integration

JOB = {"target": "example.org", "collectors": ["noop"]}
SECRET = b"an-hs256-secret-of-at-least-32-bytes!"
JWT_ENV = {
    "COLLECTQ_JWT_KEYS": json.dumps(
        {"keys": [{"kid": "k1", "alg": "HS256", "k": base64.urlsafe_b64encode(SECRET).decode()}]}
    ),
    "COLLECTQ_JWT_ISSUER": "https://idp.test",
    "COLLECTQ_JWT_AUDIENCE": "collectq",
}


def _jwt(sub: str, scope: str, secret: bytes = SECRET, kid: str = "k1", **over: Any) -> str:
    now = int(time.time())
    claims = {"sub": sub, "scope": scope, "iss": "https://idp.test", "aud": "collectq",
              "iat": now, "exp": now + 60, "nbf": now - 1, **over}  # fmt: skip
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


class _Reasons(logging.Handler):
    """The `collectq.auth` log lines of one test (the app replaces the root handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> _Reasons:
        logger = logging.getLogger("collectq.auth")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("collectq.auth")
        logger.removeHandler(self)
        logger.setLevel(self._level)


def _answer(resp: Any) -> tuple[int, dict[str, Any], str]:
    body = {k: v for k, v in (resp.json or {}).items() if k != "request_id"}
    return resp.status_code, body, resp.headers.get("WWW-Authenticate", "")


def _failed_credentials(app: Any) -> dict[str, str]:
    keys = runtime(app).keys
    rw = ["jobs:read", "jobs:write"]
    good = keys.create(owner="a", name="n", scopes=rw)[1]
    revoked, revoked_token = keys.create(owner="a", name="n", scopes=rw)
    keys.revoke(revoked.prefix)
    rotated, rotated_token = keys.create(owner="a", name="n", scopes=rw)
    keys.rotate(rotated.prefix, overlap=0)
    prefix = parse_token(good)
    now = int(time.time())
    return {
        "jwt unknown kid": _jwt("alice", "jobs:read", kid="k9"),
        "jwt wrong secret": _jwt("alice", "jobs:read", secret=b"x" * 40),
        "jwt expired": _jwt("alice", "jobs:read", exp=now - 120),
        "jwt audience": _jwt("alice", "jobs:read", aud="other"),
        "jwt lifetime over a day": _jwt("alice", "jobs:read", iat=now - 90000),
        "jwt without iat": _jwt("alice", "jobs:read", iat=None),
        "jwt iat in the future": _jwt("alice", "jobs:read", iat=now + 3600),
        "jwt subject *": _jwt("*", "jobs:read"),
        "jwt-shaped garbage": "a.b.c",
        "key unknown prefix": format_token("zzzzzzzzzzzz", "A" * 32),
        "key wrong secret": format_token(prefix, "A" * 32),
        "key bad checksum": good[:-1] + ("x" if good[-1] != "x" else "y"),
        "key revoked": revoked_token,
        "key expired": keys.create(owner="a", name="n", scopes=rw, expires_at=now - 1)[1],
        "key rotated out": rotated_token,
        "key outside its networks": keys.create(
            owner="a", name="n", scopes=rw, cidrs=["10.0.0.0/8"]
        )[1],  # fmt: skip
        "neither a key nor a JWT": "hello",
    }


def test_every_failed_credential_gets_one_answer_and_the_log_the_reason(make_app) -> None:
    """A stolen key must not learn it is valid (revoked, outside its networks, ...)."""
    app = make_app(**JWT_ENV)
    cases = _failed_credentials(app)
    answers: dict[tuple[Any, ...], list[str]] = {}
    with _Reasons() as log:
        for case, token in cases.items():
            resp = app.test_client(api_key=token).get("/v1/jobs")
            status, body, challenge = _answer(resp)
            key = (status, json.dumps(body, sort_keys=True), challenge)
            answers.setdefault(key, []).append(case)
    assert len(answers) == 1, answers
    (status, body, challenge), _ = next(iter(answers.items()))
    assert status == 401
    assert 'error="invalid_token"' in challenge
    # the server log keeps a distinct reason per case, and never a credential
    assert len(log.lines) == len(cases)
    assert len(set(log.lines)) == len(cases), log.lines
    for token in cases.values():
        if len(token) > 8:
            assert not any(token in line for line in log.lines)


def test_header_mistakes_stay_distinguishable(make_app) -> None:
    """No credential at all / a wrong scheme reveal nothing and help a client: they keep theirs."""
    app = make_app(**JWT_ENV)
    bad = _answer(app.test_client(api_key="cq_nope").get("/v1/jobs"))
    none = app.test_client(api_key="").get("/v1/jobs")
    assert none.status_code == 401
    assert "error=" not in none.headers["WWW-Authenticate"]  # RFC 6750: no credentials
    assert none.json["detail"] != bad[1]["detail"]
    basic = app.test_client(api_key="")
    basic.environ_base["HTTP_AUTHORIZATION"] = "Basic dXNlcjpwYXNz"
    assert "Bearer" in basic.get("/v1/jobs").json["detail"]


def test_jwt_subject_is_the_owner(make_app) -> None:
    app = make_app(**JWT_ENV)
    alice = app.test_client(api_key=_jwt("alice", "jobs:read jobs:write"))
    bob = app.test_client(api_key=_jwt("bob", "jobs:read jobs:write"))
    job = alice.post("/v1/jobs", json=JOB)
    assert job.status_code == 202
    assert alice.get(f"/v1/jobs/{job.json['id']}").status_code == 200
    assert bob.get(f"/v1/jobs/{job.json['id']}").status_code == 404
    assert (
        app.test_client(api_key=_jwt("carol", "jobs:read")).post("/v1/jobs", json=JOB).status_code
        == 403
    )
    expired = app.test_client(api_key=_jwt("alice", "jobs:read", exp=int(time.time()) - 120))
    resp = expired.get("/v1/jobs")
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_jwt_is_refused_when_not_configured(make_app) -> None:
    app = make_app()
    with _Reasons() as log:
        resp = app.test_client(api_key=_jwt("alice", "admin")).get("/v1/jobs")
        wrong_key = app.test_client(api_key=format_token("zzzzzzzzzzzz", "A" * 32)).get("/v1/jobs")
    assert resp.status_code == 401
    assert _answer(resp) == _answer(wrong_key)  # the server's setup is not disclosed either
    assert any("not enabled" in line for line in log.lines)


def test_cors_preflight_allowed_and_denied(make_app) -> None:
    client = make_app(COLLECTQ_CORS_ORIGINS="https://ui.example").test_client(api_key="")
    pre = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    ok = client.options("/v1/jobs", headers={"Origin": "https://ui.example", **pre})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "authorization" in ok.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in ok.headers
    denied = client.options("/v1/jobs", headers={"Origin": "https://evil.example", **pre})
    assert "Access-Control-Allow-Origin" not in denied.headers
    # actual request: exposed headers let a browser read Location and the rate-limit state
    keyed = client.application.test_client()
    resp = keyed.post("/v1/jobs", json=JOB, headers={"Origin": "https://ui.example"})
    exposed = resp.headers["Access-Control-Expose-Headers"]
    for name in ("Location", "RateLimit-Remaining", "Retry-After"):
        assert name in exposed


def test_cors_with_credentials_reflects_only_listed_origins(make_app) -> None:
    client = make_app(
        COLLECTQ_CORS_ORIGINS="https://ui.example", COLLECTQ_CORS_CREDENTIALS="true"
    ).test_client()
    resp = client.get("/v1/jobs", headers={"Origin": "https://ui.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    other = client.get("/v1/jobs", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_no_cors_headers_without_configured_origins(make_app) -> None:
    resp = make_app().test_client().get("/v1/jobs", headers={"Origin": "https://ui.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_security_headers_and_no_store_on_job_data(make_app) -> None:
    client = make_app().test_client()
    job = client.post("/v1/jobs", json=JOB).json
    for resp in (client.get(f"/v1/jobs/{job['id']}"), client.get("/v1/jobs"),
                 client.get("/nope")):  # fmt: skip
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    docs = client.get("/docs")
    assert docs.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in docs.headers  # Swagger UI runs scripts


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**JOB, "labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
        ({**JOB, "labels": {"k": "v" * 257}}, "labels"),
        ({**JOB, "labels": {"bad key!": "v"}}, "labels"),
        ({**JOB, "target": "https://a.org/" + "x" * 2048}, "target"),
        ({**JOB, "target": "ftp://a.org/"}, "target"),
        ({**JOB, "target": "file:///etc/passwd"}, "target"),
        ({**JOB, "target": "https://user:pw@a.org/"}, "target"),
        ({**JOB, "collectors": [f"c{i}" for i in range(17)]}, "collectors"),
        ({**JOB, "collectors": []}, "collectors"),
        ({**JOB, "priority": 1}, "priority"),
        ({"target": "a.org", "collectors": ["http"],
          "options": {"http": {"headers": {f"h{i}": "v" for i in range(100)}}}}, "options"),
        ({"target": "a.org", "collectors": ["http"],
          "options": {"http": {"timeout": 1e9}}}, "options"),
    ],
)  # fmt: skip
def test_input_bounds_are_422_naming_the_field(make_app, body, field) -> None:
    resp = make_app().test_client().post("/v1/jobs", json=body)
    assert resp.status_code == 422, resp.json
    assert field in resp.json["errors"]


def test_idempotency_key_is_bounded(make_app) -> None:
    resp = (
        make_app().test_client().post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "k" * 257})
    )
    assert resp.status_code == 422
    assert "Idempotency-Key" in resp.json["errors"]


def test_keys_api_bounds(make_app) -> None:
    client = make_app().test_client()
    body = {"owner": "o" * 129, "name": "", "scopes": ["jobs:read"] * 6,
            "cidrs": ["not-a-net"], "rate_limits": {"submit": "lots"}, "expires_in": 1}  # fmt: skip
    resp = client.post("/v1/keys", json=body)
    assert resp.status_code == 422
    assert set(resp.json["errors"]) == {"owner", "name", "scopes", "cidrs", "rate_limits",
                                        "expires_in"}  # fmt: skip


def test_queued_jobs_quota_per_owner(make_app) -> None:
    app = make_app(COLLECTQ_MAX_QUEUED_JOBS="2")
    keys = runtime(app).keys
    a = app.test_client(api_key=keys.create(owner="a", name="n", scopes=["jobs:write"])[1])
    b = app.test_client(api_key=keys.create(owner="b", name="n", scopes=["jobs:write"])[1])
    fresh = {**JOB, "fresh": True}  # two jobs of the same work (else the second shares)
    first = a.post("/v1/jobs", json=fresh).json["id"]
    assert a.post("/v1/jobs", json=fresh).status_code == 202
    full = a.post("/v1/jobs", json=fresh, headers={"Idempotency-Key": "k1"})
    assert full.status_code == 429
    assert full.json["type"].endswith("/quota_exceeded")
    assert full.json["limit"] == 2
    assert int(full.headers["Retry-After"]) > 0
    shared = a.post("/v1/jobs", json=JOB)  # queues nothing: an in-flight job answers
    assert (shared.status_code, shared.headers["Collectq-Reused"]) == (202, "in-flight")
    assert b.post("/v1/jobs", json=JOB).status_code == 202  # another owner's quota
    assert a.delete(f"/v1/jobs/{first}").status_code == 200  # cancelled: no longer queued
    again = a.post("/v1/jobs", json=fresh, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202  # the refused attempt did not keep the key


def test_rate_limit_per_key_in_process_with_override(make_app) -> None:
    app = make_app(COLLECTQ_RATE_LIMIT_READ="3/minute")
    keys = runtime(app).keys
    plain = app.test_client(api_key=keys.create(owner="a", name="n", scopes=["jobs:read"])[1])
    roomy_token = keys.create(
        owner="a", name="n", scopes=["jobs:read"], rate_limits={"read": "10/minute"}
    )[1]
    roomy = app.test_client(api_key=roomy_token)
    codes = [plain.get("/v1/jobs") for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[0].headers["RateLimit-Limit"] == "3"
    assert codes[0].headers["RateLimit-Remaining"] == "2"
    assert codes[0].headers["RateLimit-Policy"] == "3;w=60"
    limited = codes[3]
    assert limited.mimetype == "application/problem+json"
    assert limited.json["type"].endswith("/rate_limited")
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert [roomy.get("/v1/jobs").status_code for _ in range(5)] == [200] * 5
    assert plain.get("/health").status_code == 200  # probes are never limited
    # one bucket per route class: every read route counts, writes do not
    assert plain.get("/v1/collectors").status_code == 429
    writer = keys.create(owner="a", name="w", scopes=["jobs:read", "jobs:write"])[1]
    w = app.test_client(api_key=writer)
    assert [w.get("/v1/jobs").status_code for _ in range(4)][-1] == 429
    assert w.post("/v1/jobs", json=JOB).status_code == 202


@pytest.mark.parametrize(("hops", "spoof_resets"), [("0", False), ("1", True)])
def test_failed_auth_is_limited_per_address_and_xff_trusted_only_per_hops(
    make_app, hops, spoof_resets
) -> None:
    client = make_app(
        COLLECTQ_RATE_LIMIT_READ="2/minute", COLLECTQ_TRUSTED_PROXIES=hops
    ).test_client(api_key="")
    assert [client.get("/v1/jobs").status_code for _ in range(3)] == [401, 401, 429]
    spoofed = client.get("/v1/jobs", headers={"X-Forwarded-For": "203.0.113.9"})
    # Without a trusted proxy the header is ignored: a client cannot pick a fresh bucket.
    assert spoofed.status_code == (401 if spoof_resets else 429)
