"""Tenant isolation: no credential reaches another owner's jobs or the admin index.

JWT subjects are chosen by whoever holds a trusted issuer's signing key (or by
a misconfigured IdP): each crafted subject must either be refused (401) or see
only the jobs it submitted itself — never the admin index, never an API-key
owner's jobs.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from app.jobs.store import ALL_OWNERS, JobStore, ListFilter
from app.runtime import runtime

pytestmark = pytest.mark.integration

JOB = {"target": "example.org", "collectors": ["noop"]}
SECRET = b"an-hs256-secret-of-at-least-32-bytes!"
ISSUER = "https://idp.test"
JWT_ENV = {
    "COLLECTQ_JWT_KEYS": json.dumps(
        {"keys": [{"kid": "k1", "alg": "HS256", "k": base64.urlsafe_b64encode(SECRET).decode()}]}
    ),
    "COLLECTQ_JWT_ISSUER": ISSUER,
    "COLLECTQ_JWT_AUDIENCE": "collectq",
}
KEY_OWNER = "owner-a"

CRAFTED_SUBJECTS = [
    "*",
    "",
    " ",
    "a:b",
    "x|y",
    KEY_OWNER,  # an API-key owner's exact name
    "tests",  # the fixture admin key's owner
    f"jwt:{KEY_OWNER}",
    "a" * 129,
    "a" * 5000,
    "ünïcødé",
    "a\x00b",
    "a\nb",
    "a\tb",
    "a/b",
    "a b",
    "idx-all",
    "public",
]


def _jwt(sub: str, scope: str = "jobs:read jobs:write", iss: str = ISSUER) -> str:
    now = int(time.time())
    claims = {"sub": sub, "scope": scope, "iss": iss, "aud": "collectq",
              "iat": now, "exp": now + 60, "nbf": now - 1}  # fmt: skip
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})


def _ids(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.json
    return {j["id"] for j in resp.json["items"]}


@pytest.fixture
def tenants(make_app) -> Any:
    app = make_app(**JWT_ENV)
    keys = runtime(app).keys
    _, token = keys.create(owner=KEY_OWNER, name="t", scopes=["jobs:read", "jobs:write"])
    key_client = app.test_client(api_key=token)
    key_job = key_client.post("/v1/jobs", json=JOB).json["id"]
    admin_job = app.test_client().post("/v1/jobs", json=JOB).json["id"]
    return app, key_job, admin_job


@pytest.mark.parametrize("sub", CRAFTED_SUBJECTS, ids=repr)
def test_crafted_subject_is_refused_or_sees_only_its_own_jobs(tenants, sub) -> None:
    app, key_job, admin_job = tenants
    reader = app.test_client(api_key=_jwt(sub, "jobs:read"))
    listed = reader.get("/v1/jobs")
    if listed.status_code == 401:
        return
    assert _ids(listed) == set(), f"{sub!r} sees jobs it never submitted"
    writer = app.test_client(api_key=_jwt(sub))
    own = writer.post("/v1/jobs", json=JOB)
    assert own.status_code == 202, own.json
    assert _ids(writer.get("/v1/jobs")) == {own.json["id"]}
    assert _ids(reader.get("/v1/jobs")) == {own.json["id"]}
    for other in (key_job, admin_job):
        assert reader.get(f"/v1/jobs/{other}").status_code == 404


def test_same_subject_from_another_issuer_is_another_owner(make_app) -> None:
    """An owner is namespaced by its issuer: a new IdP's `alice` is not the old one's."""
    first = make_app(**JWT_ENV)
    job = first.test_client(api_key=_jwt("alice")).post("/v1/jobs", json=JOB).json["id"]
    second = make_app(**{**JWT_ENV, "COLLECTQ_JWT_ISSUER": "https://other-idp.test"})
    alice2 = second.test_client(api_key=_jwt("alice", iss="https://other-idp.test"))
    assert alice2.get(f"/v1/jobs/{job}").status_code == 404
    assert _ids(alice2.get("/v1/jobs")) == set()


@pytest.mark.parametrize("owner", ["jwt:abc:alice", "JWT:abc:alice", "*", "", "team-a\n"])
def test_key_owners_cannot_look_like_jwt_owners_or_the_admin_index(make_app, owner) -> None:
    app = make_app()
    body = {"owner": owner, "name": "n", "scopes": ["jobs:read"]}
    resp = app.test_client().post("/v1/keys", json=body)
    assert resp.status_code == 422, resp.json
    assert "owner" in resp.json["errors"]
    with pytest.raises(ValueError, match="owner"):
        runtime(app).keys.create(owner=owner, name="n", scopes=["jobs:read"])


def test_a_stored_key_with_a_reserved_owner_is_refused(make_app) -> None:
    """A key written before owners were checked must not act as a JWT owner."""
    app = make_app(**JWT_ENV)
    rt = runtime(app)
    key, token = rt.keys.create(owner="legacy", name="n", scopes=["jobs:read"])
    rt.redis.hset(rt.keys.names.api_key(key.prefix), "owner", "jwt:abc:alice")
    assert app.test_client(api_key=token).get("/v1/jobs").status_code == 401


def test_admin_index_is_not_an_owner_index(store) -> None:
    """No owner name reaches the admin index; the old `idx:*` is adopted, not lost."""
    kw: dict[str, Any] = {"target": "example.org", "collectors": ["noop"], "options": {},
                          "labels": {}}  # fmt: skip
    mine = store.create(owner="owner-a", **kw)["id"]
    assert store.keys.all_jobs not in {store.keys.index(o) for o in ("*", "", "all", "-all")}
    assert not store.keys.all_jobs.startswith(store.keys.index(""))
    assert list(store.iter_ids("*", None)) == []
    assert list(store.iter_ids(ALL_OWNERS, None)) == [mine]
    # a job indexed only under the pre-fix admin index (`idx:*`) is still listed for admins
    old = store.create(owner="owner-b", **kw)["id"]
    store.redis.zrem(store.keys.all_jobs, old)
    store.redis.zadd(store.keys.index("*"), {old: 0})
    upgraded = JobStore(store.redis, store.keys.prefix, ttl=600)  # the next process to start
    items, _ = upgraded.list(ALL_OWNERS, ListFilter(), limit=10, cursor=None)
    assert {e["id"] for e in items} == {mine, old}
    assert store.redis.exists(store.keys.index("*")) == 0
