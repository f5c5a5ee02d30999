"""No secret is ever written: logs (API and worker, DEBUG, JSON), error bodies, /v1/status,
`config check`. Runs the real processes with every kind of secret configured and used."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest
import redis

from tests.conftest import AMQP_BASE, REDIS_URL, ROOT, free_port, wait_for

pytestmark = pytest.mark.integration


def _call(port: int, method: str, path: str, token: str | None = None, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


@pytest.fixture
def broker_user(vhost: str):
    """A RabbitMQ user with a random password, so the broker URL carries a real secret."""
    ctl = shutil.which("rabbitmqctl")
    assert ctl
    # "p" first: a password that starts with "-" would be read by rabbitmqctl as an option
    name, password = f"cq-{secrets.token_hex(4)}", "p" + secrets.token_urlsafe(24)
    subprocess.run([ctl, "add_user", name, password], check=True, capture_output=True)
    subprocess.run([ctl, "set_permissions", "-p", vhost, name, ".*", ".*", ".*"], check=True,
                   capture_output=True)  # fmt: skip
    yield name, password
    subprocess.run([ctl, "delete_user", name], capture_output=True)


def test_no_secret_reaches_logs_errors_status_or_config_check(
    service_env, vhost, broker_user, start_worker, tmp_path: Path
) -> None:
    from app.auth.apikeys import KeyStore

    user, broker_password = broker_user
    secret_key = secrets.token_urlsafe(32)
    jwt_secret = secrets.token_bytes(32)
    flower_password = secrets.token_urlsafe(16)
    host = AMQP_BASE.split("@", 1)[1]
    env = {
        **service_env,
        "COLLECTQ_BROKER_URL": f"amqp://{user}:{broker_password}@{host}/{vhost}",
        "COLLECTQ_SECRET_KEY": secret_key,
        "COLLECTQ_FLOWER_BASIC_AUTH": f"ops:{flower_password}",
        "COLLECTQ_JWT_KEYS": json.dumps(
            {
                "keys": [
                    {"kid": "k", "alg": "HS256", "k": base64.urlsafe_b64encode(jwt_secret).decode()}
                ]
            }  # fmt: skip
        ),
        "COLLECTQ_JWT_ISSUER": "https://idp.test",
        "COLLECTQ_JWT_AUDIENCE": "collectq",
        "COLLECTQ_LOG_LEVEL": "DEBUG",
        "COLLECTQ_LOG_JSON": "true",
    }
    store = KeyStore(redis.Redis.from_url(REDIS_URL), service_env["COLLECTQ_REDIS_PREFIX"])
    _, admin = store.create(owner="ops", name="admin", scopes=["admin"])
    revoked_key, revoked = store.create(owner="ops", name="old", scopes=["jobs:read"])
    store.revoke(revoked_key.prefix)
    now = int(time.time())
    claims = {"sub": "alice", "iss": "https://idp.test", "aud": "collectq", "exp": now + 60,
              "nbf": now - 1, "iat": now, "scope": "jobs:read jobs:write"}  # fmt: skip
    good_jwt = jwt.encode(claims, jwt_secret, algorithm="HS256", headers={"kid": "k"})
    bad_jwt = jwt.encode({**claims, "aud": "x"}, jwt_secret, algorithm="HS256",
                         headers={"kid": "k"})  # fmt: skip
    worker = start_worker(**env)

    port = free_port()
    api_log = tmp_path / "api.log"
    with api_log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    bodies: list[bytes] = []
    try:
        wait_for(lambda: _call(port, "GET", "/health")[0] == 200, timeout=30, interval=0.1)
        job_body = {"target": "a.org", "collectors": ["noop"]}
        status, body = _call(port, "POST", "/v1/jobs", admin, job_body)
        assert status == 202, body
        job = json.loads(body)["id"]
        status, body = _call(port, "GET", f"/v1/jobs/{job}?wait=10", admin)
        assert json.loads(body)["status"] == "succeeded"
        created = _call(port, "POST", "/v1/keys", admin,
                        {"owner": "x", "name": "y", "scopes": ["jobs:read"]})  # fmt: skip
        new_token = json.loads(created[1])["token"]
        rotated = json.loads(_call(port, "POST", f"/v1/keys/{new_token[3:15]}/rotate", admin,
                                   {})[1])["key"]["token"]  # fmt: skip
        for method, path, token, body_ in [
            ("GET", "/v1/jobs", good_jwt, None),
            ("GET", "/v1/jobs", bad_jwt, None),
            ("GET", "/v1/jobs", revoked, None),
            ("GET", "/v1/jobs", admin[:-4] + "AAAA", None),
            ("GET", "/v1/jobs", new_token, None),
            ("GET", "/v1/jobs", rotated, None),
            ("GET", "/v1/status", admin, None),
            ("GET", "/containers/status", admin, None),
            ("GET", "/ready", None, None),
            ("GET", "/v1/keys", admin, None),
            ("POST", "/v1/jobs", admin, {"target": "gopher://x", "collectors": ["nope"]}),
            ("GET", "/v1/jobs/j_01M887CQSBQGS7Y298Z8V2M0PT", admin, None),
        ]:
            status, body = _call(port, method, path, token, body_)
            assert status != 500, body
            if path != "/v1/keys":  # the key listing shows prefixes, never tokens: checked below
                bodies.append(body)
            else:
                assert new_token.encode() not in body
                assert rotated.encode() not in body
        status_body = _call(port, "GET", "/v1/status", admin)[1]
        assert b"***" in status_body  # the broker URL is shown, its password is not
    finally:
        api.terminate()
        api.wait(30)
        worker.stop()
    check = subprocess.run(
        [sys.executable, "-m", "app.cli", "config", "check"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr

    written = {
        "api log": api_log.read_text(),
        "worker log": worker.log_path.read_text(),
        "config check": check.stdout + check.stderr,
        "responses": b"\n".join(bodies).decode(),
    }
    assert "authentication failed" in written["api log"]  # the failures were logged...
    assert '"level": "debug"' in written["worker log"] or "DEBUG" in written["worker log"]
    forbidden = {
        "broker password": broker_password,
        "secret key": secret_key,
        "flower password": flower_password,
        "jwt secret": base64.urlsafe_b64encode(jwt_secret).decode().rstrip("="),
        "admin key": admin,
        "admin key secret": admin.rsplit("_", 1)[1],
        "revoked key": revoked,
        "new key": new_token,
        "rotated key": rotated,
        "good jwt": good_jwt,
        "bad jwt signature": bad_jwt.rsplit(".", 1)[1],
    }
    leaks = [
        f"{what} in {where}"
        for where, text in written.items()
        for what, value in forbidden.items()
        if value in text
    ]
    assert leaks == []  # ...and nothing secret was
