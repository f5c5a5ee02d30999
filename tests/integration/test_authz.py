"""Authorization matrix: every route × every credential case, against the real Redis/RabbitMQ.

The table it prints (`pytest -s`) is the one in the security report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest

from api.identity import AUTHENTICATED
from app.auth.apikeys import format_token, parse_token
from app.auth.failures import INVALID_CREDENTIALS
from app.runtime import runtime

pytestmark = pytest.mark.integration

JOB = {"target": "example.org", "collectors": ["noop"]}
SCHEDULE = {"job": JOB, "trigger": {"interval": 3600}}
OPEN_ROUTES = {"/health", "/ready", "/openapi.json", "/docs", "/docs/assets/<path:filename>"}


@dataclass
class Ctx:
    app: Any
    admin: Any  # the fixture's admin client
    tokens: dict[str, str]
    job_a: str
    schedule_a: str = ""
    job_done: str = ""  # a final (cancelled) job of a: its event stream ends at once

    def client(self, token: str | None, header: str = "bearer") -> Any:
        c = self.app.test_client(api_key="")
        if token is not None:
            name = "HTTP_AUTHORIZATION" if header == "bearer" else "HTTP_X_API_KEY"
            c.environ_base[name] = f"Bearer {token}" if header == "bearer" else token
        return c

    def new_job(self) -> str:
        resp = self.client(self.tokens["a"]).post("/v1/jobs", json=JOB)
        assert resp.status_code == 202, resp.json
        return str(resp.json["id"])

    def new_schedule(self) -> str:
        resp = self.client(self.tokens["a"]).post("/v1/schedules", json=SCHEDULE)
        assert resp.status_code == 201, resp.json
        return str(resp.json["id"])

    def new_key(self) -> str:
        key, _ = runtime(self.app).keys.create(owner="c", name="victim", scopes=["jobs:read"])
        return key.prefix


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: Callable[[Ctx], str]
    scope: str
    owned: bool  # addresses one owner's record: another owner gets 404
    ok: int
    body: Callable[[Ctx], Any] | None = None


ROUTES = [
    Route("POST /v1/jobs", "POST", lambda c: "/v1/jobs", "jobs:write", False, 202, lambda c: JOB),
    Route("GET /v1/jobs", "GET", lambda c: "/v1/jobs", "jobs:read", False, 200),
    Route("GET /v1/jobs/{id}/events", "GET", lambda c: f"/v1/jobs/{c.job_done}/events",
          "jobs:read", True, 200),
    Route("GET /v1/events", "GET", lambda c: "/v1/events", "jobs:read", False, 200),
    Route("POST /v1/jobs/batch", "POST", lambda c: "/v1/jobs/batch", "jobs:write", False, 200,
          lambda c: {"jobs": [JOB]}),
    Route("GET /v1/jobs/{id}", "GET", lambda c: f"/v1/jobs/{c.job_a}", "jobs:read", True, 200),
    Route("DELETE /v1/jobs/{id}", "DELETE", lambda c: f"/v1/jobs/{c.new_job()}", "jobs:write",
          True, 200),
    Route("GET /v1/jobs/{id}/artifacts/{name}", "GET",
          lambda c: f"/v1/jobs/{c.job_a}/artifacts/http.body", "jobs:read", True, 200),
    Route("GET /v1/jobs/{id}/deliveries", "GET", lambda c: f"/v1/jobs/{c.job_a}/deliveries",
          "jobs:read", True, 200),
    Route("GET /v1/webhooks/secret", "GET", lambda c: "/v1/webhooks/secret", "jobs:write", False,
          200),
    Route("POST /v1/webhooks/secret/rotate", "POST", lambda c: "/v1/webhooks/secret/rotate",
          "jobs:write", False, 201),
    Route("GET /v1/collectors", "GET", lambda c: "/v1/collectors", "jobs:read", False, 200),
    Route("GET /v1/status", "GET", lambda c: "/v1/status", "jobs:read", False, 200),
    Route("POST /collect", "POST", lambda c: "/collect", "jobs:write", False, 202, lambda c: JOB),
    Route("GET /containers/status", "GET", lambda c: "/containers/status", "jobs:read", False,
          200),
    Route("POST /v1/keys", "POST", lambda c: "/v1/keys", "admin", False, 201,
          lambda c: {"owner": "c", "name": "n", "scopes": ["jobs:read"]}),
    Route("GET /v1/keys", "GET", lambda c: "/v1/keys", "admin", False, 200),
    Route("GET /v1/keys/{prefix}", "GET", lambda c: f"/v1/keys/{c.new_key()}", "admin", False,
          200),
    Route("DELETE /v1/keys/{prefix}", "DELETE", lambda c: f"/v1/keys/{c.new_key()}", "admin",
          False, 200),
    Route("POST /v1/keys/{prefix}/rotate", "POST", lambda c: f"/v1/keys/{c.new_key()}/rotate",
          "admin", False, 201, lambda c: {"overlap": 60}),
    Route("GET /v1/keys/{prefix}/events", "GET", lambda c: f"/v1/keys/{c.new_key()}/events",
          "admin", False, 200),
    Route("PUT /v1/webhooks/endpoint", "PUT", lambda c: "/v1/webhooks/endpoint", "jobs:write",
          False, 200, lambda c: {"url": "https://hooks.example.org/collectq"}),
    Route("GET /v1/webhooks/endpoint", "GET", lambda c: "/v1/webhooks/endpoint", "jobs:read",
          False, 200),
    Route("DELETE /v1/webhooks/endpoint", "DELETE", lambda c: "/v1/webhooks/endpoint",
          "jobs:write", False, 204),
    Route("POST /v1/schedules", "POST", lambda c: "/v1/schedules", "schedules:write", False, 201,
          lambda c: SCHEDULE),
    Route("GET /v1/schedules", "GET", lambda c: "/v1/schedules", "schedules:read", False, 200),
    Route("GET /v1/schedules/{schedule_id}", "GET", lambda c: f"/v1/schedules/{c.schedule_a}",
          "schedules:read", True, 200),
    Route("PATCH /v1/schedules/{schedule_id}", "PATCH",
          lambda c: f"/v1/schedules/{c.schedule_a}", "schedules:write", True, 200,
          lambda c: {"name": "renamed"}),
    Route("DELETE /v1/schedules/{schedule_id}", "DELETE",
          lambda c: f"/v1/schedules/{c.new_schedule()}", "schedules:write", True, 204),
    Route("POST /v1/schedules/{schedule_id}/pause", "POST",
          lambda c: f"/v1/schedules/{c.schedule_a}/pause", "schedules:write", True, 200),
    Route("POST /v1/schedules/{schedule_id}/resume", "POST",
          lambda c: f"/v1/schedules/{c.schedule_a}/resume", "schedules:write", True, 200),
    Route("POST /v1/schedules/{schedule_id}/run", "POST",
          lambda c: f"/v1/schedules/{c.schedule_a}/run", "schedules:write", True, 202),
    Route("GET /v1/schedules/{schedule_id}/runs", "GET",
          lambda c: f"/v1/schedules/{c.schedule_a}/runs", "schedules:read", True, 200),
    Route("GET /v1/schedules/{schedule_id}/changes", "GET",
          lambda c: f"/v1/schedules/{c.schedule_a}/changes", "schedules:read", True, 200),
    # last: each credential that passes rotates itself (it keeps working for the overlap)
    Route("POST /v1/keys/self/rotate", "POST", lambda c: "/v1/keys/self/rotate",
          AUTHENTICATED, False, 201, lambda c: {"overlap": 3600}),
]  # fmt: skip

CASES = [
    "no key",
    "malformed",
    "wrong secret",
    "expired",
    "revoked",
    "rotated out",
    "wrong scope",
    "other owner",
    "own key",
    "admin",
]


def _setup(make_app: Any) -> Ctx:
    # the matrix makes ~150 refused attempts from one address within seconds: more than the
    # admin class's default per-address limit on them (that limit has tests of its own)
    app = make_app(COLLECTQ_RATE_LIMIT_ADMIN="1000/minute")
    keys = runtime(app).keys
    rw = ["jobs:read", "jobs:write", "schedules:read", "schedules:write"]

    def token(owner: str, scopes: list[str], **kw: Any) -> str:
        return keys.create(owner=owner, name="t", scopes=scopes, **kw)[1]

    tokens = {
        "a": token("owner-a", rw),
        "b": token("owner-b", rw),
        "expired": token("owner-a", rw, expires_at=time.time() - 1),
        "revoked": token("owner-a", rw),
        "rotated": token("owner-a", rw),
        "schedules-only": token("owner-a", ["schedules:read"]),
        "jobs-only": token("owner-a", ["jobs:read", "jobs:write"]),
        "admin": app.config["TEST_API_KEY"],
    }
    keys.revoke(parse_token(tokens["revoked"]))
    keys.rotate(parse_token(tokens["rotated"]), overlap=0)
    good = tokens["a"]
    prefix = parse_token(good)
    tokens["wrong secret"] = format_token(prefix, "A" * 32)  # well formed, checksum right
    tokens["malformed"] = good[:-1] + ("x" if good[-1] != "x" else "y")  # checksum wrong
    ctx = Ctx(app, app.test_client(), tokens, "")
    ctx.job_a = ctx.new_job()
    ctx.schedule_a = ctx.new_schedule()
    ctx.job_done = ctx.new_job()
    assert ctx.client(tokens["a"]).delete(f"/v1/jobs/{ctx.job_done}").status_code == 200
    runtime(app).store.artifacts.put(ctx.job_a, "http.body", "text/plain", b"owned by a")
    return ctx


def _token_for(ctx: Ctx, route: Route, case: str) -> str | None:
    t = ctx.tokens
    if case == "wrong scope":
        if route.scope.startswith("schedules:"):
            return t["jobs-only"]
        return t["schedules-only"] if route.scope != "admin" else t["a"]
    return {
        "no key": None,
        "malformed": t["malformed"],
        "wrong secret": t["wrong secret"],
        "expired": t["expired"],
        "revoked": t["revoked"],
        "rotated out": t["rotated"],
        "other owner": t["b"],
        "own key": t["a"],
        "admin": t["admin"],
    }[case]


def _expected(route: Route, case: str) -> int | None:
    if case in ("no key", "malformed", "wrong secret", "expired", "revoked", "rotated out"):
        return 401
    if route.scope == AUTHENTICATED:
        return route.ok  # any valid credential, whatever its scopes or owner
    if case == "wrong scope":
        return 403
    if route.scope == "admin" and case in ("other owner", "own key"):
        return 403  # owner keys carry no admin scope
    if case == "other owner":
        return 404 if route.owned else route.ok
    return route.ok


def test_authorization_matrix(make_app) -> None:
    ctx = _setup(make_app)
    seen: dict[tuple[str, str], int] = {}
    for route in ROUTES:
        for case in CASES:
            client = ctx.client(_token_for(ctx, route, case))
            body = route.body(ctx) if route.body else None
            resp = client.open(route.path(ctx), method=route.method, json=body)
            seen[route.name, case] = resp.status_code
            resp.close()  # an event stream: unsubscribe, free its wait slot (body unread)
            if resp.status_code == 401:
                assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="collectq"')
                assert resp.mimetype == "application/problem+json"
            if resp.status_code == 403:
                assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
                assert resp.json["required_scope"] == route.scope
    width = max(len(r.name) for r in ROUTES)
    lines = [f"{'route':<{width}} | " + " | ".join(CASES)]
    for route in ROUTES:
        cells = [f"{seen[route.name, c]:^{len(c)}}" for c in CASES]
        lines.append(f"{route.name:<{width}} | " + " | ".join(cells))
    print("\n" + "\n".join(lines))
    wrong = {
        k: (v, _expected(next(r for r in ROUTES if r.name == k[0]), k[1]))
        for k, v in seen.items()
        if v != _expected(next(r for r in ROUTES if r.name == k[0]), k[1])
    }
    assert wrong == {}, wrong


def test_every_route_is_in_the_matrix_or_open(make_app) -> None:
    app = make_app()
    covered = {r.name.split(" ", 1)[1].replace("{id}", "<job_id>") for r in ROUTES}
    covered = {
        p.replace("{name}", "<name>")
        .replace("{prefix}", "<prefix>")
        .replace("{schedule_id}", "<schedule_id>")
        for p in covered
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        assert rule.rule in covered | OPEN_ROUTES, f"{rule.rule} is neither in the matrix nor open"


def test_open_routes_need_no_key(make_app) -> None:
    client = make_app().test_client(api_key="")
    for path in ("/health", "/ready", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_listing_shows_only_own_jobs_and_admin_sees_all(make_app) -> None:
    ctx = _setup(make_app)
    job_b = ctx.client(ctx.tokens["b"]).post("/v1/jobs", json=JOB).json["id"]
    ids_b = {j["id"] for j in ctx.client(ctx.tokens["b"]).get("/v1/jobs").json["items"]}
    ids_a = {j["id"] for j in ctx.client(ctx.tokens["a"]).get("/v1/jobs").json["items"]}
    ids_admin = {j["id"] for j in ctx.admin.get("/v1/jobs").json["items"]}
    assert ids_b == {job_b}
    assert job_b not in ids_a
    assert ctx.job_a in ids_a
    assert {ctx.job_a, job_b} <= ids_admin


def test_x_api_key_header_and_bearer_are_both_accepted(make_app) -> None:
    ctx = _setup(make_app)
    assert ctx.client(ctx.tokens["a"], header="x-api-key").get("/v1/jobs").status_code == 200
    assert ctx.client(ctx.tokens["a"]).get("/v1/jobs").status_code == 200
    both = ctx.client(ctx.tokens["a"])
    both.environ_base["HTTP_X_API_KEY"] = ctx.tokens["a"]
    assert both.get("/v1/jobs").status_code == 401
    basic = ctx.app.test_client(api_key="")
    basic.environ_base["HTTP_AUTHORIZATION"] = "Basic dXNlcjpwYXNz"
    assert basic.get("/v1/jobs").status_code == 401


def test_rotated_key_works_during_overlap_then_stops(make_app) -> None:
    app = make_app()
    keys = runtime(app).keys
    old, old_token = keys.create(owner="o", name="r", scopes=["jobs:read"])
    new, new_token, _ = keys.rotate(old.prefix, overlap=1)
    old_client = app.test_client(api_key=old_token)
    new_client = app.test_client(api_key=new_token)
    assert old_client.get("/v1/jobs").status_code == 200
    assert new_client.get("/v1/jobs").status_code == 200
    time.sleep(1.1)  # the overlap is the behaviour under test: it has to pass
    resp = old_client.get("/v1/jobs")
    assert resp.status_code == 401
    assert resp.json["detail"] == INVALID_CREDENTIALS  # the reason goes to the log only
    assert new_client.get("/v1/jobs").status_code == 200
    assert keys.get(old.prefix).state(time.time()) == "rotated_out"
    assert keys.get(new.prefix).rotated_from == old.prefix


def test_key_limited_to_an_ip_range(make_app) -> None:
    app = make_app()
    keys = runtime(app).keys
    _, inside = keys.create(owner="o", name="n", scopes=["jobs:read"], cidrs=["127.0.0.0/8"])
    _, outside = keys.create(owner="o", name="n", scopes=["jobs:read"], cidrs=["10.0.0.0/8"])
    assert app.test_client(api_key=inside).get("/v1/jobs").status_code == 200
    resp = app.test_client(api_key=outside).get("/v1/jobs")
    assert resp.status_code == 401
    assert resp.json["detail"] == INVALID_CREDENTIALS  # not "valid, but not from here"


def test_last_used_is_recorded_and_keys_api_never_shows_secrets(make_app) -> None:
    app = make_app()
    admin = app.test_client()
    created = admin.post("/v1/keys", json={"owner": "o", "name": "n", "scopes": ["jobs:read"]})
    assert created.status_code == 201
    token = created.json["token"]
    assert created.headers["Location"] == f"/v1/keys/{created.json['prefix']}"
    assert app.test_client(api_key=token).get("/v1/jobs").status_code == 200
    shown = admin.get(f"/v1/keys/{created.json['prefix']}").json
    assert shown["last_used_at"] is not None
    listing = admin.get("/v1/keys").data.decode()
    assert token not in listing
    assert token.rsplit("_", 1)[1] not in listing
    key = f"{runtime(app).settings.redis_prefix}key:{shown['prefix']}"
    raw = cast(dict[bytes, bytes], runtime(app).redis.hgetall(key))
    assert token.encode() not in b"".join(raw.values())


def test_keys_api_validates_and_refuses_to_rotate_twice(make_app) -> None:
    admin = make_app().test_client()
    bad = admin.post("/v1/keys", json={"owner": "o", "name": "n", "scopes": ["root"], "x": 1})
    assert bad.status_code == 422
    assert set(bad.json["errors"]) == {"scopes", "x"}
    prefix = admin.post("/v1/keys", json={"owner": "o", "name": "n", "scopes": ["admin"]}).json[
        "prefix"
    ]
    assert admin.post(f"/v1/keys/{prefix}/rotate", json={}).status_code == 201
    assert admin.post(f"/v1/keys/{prefix}/rotate", json={}).status_code == 409
    assert admin.get("/v1/keys/nosuchkey0000").status_code == 404
