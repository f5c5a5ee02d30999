"""The JWT key set rolled over under a running API (real gunicorn), from its secret file.

The procedure of docs/operations.md, "Rotating secrets": add the new key, switch the issuer,
remove the old one. The gunicorn master sees the file change and reloads gracefully (new
workers with the new settings); no request is refused or dropped meanwhile, and the master
is never restarted. SIGHUP by hand does the same, and a file that does not load is refused.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest

from tests.apiprocess import RunningApi, running_api
from tests.conftest import free_port, wait_for
from tests.rollover import rewrite

pytestmark = pytest.mark.integration

ISS, AUD = "https://idp.test", "collectq"
OLD = ("2026-10", b"old-hs256-secret-of-at-least-32-bytes")
NEW = ("2026-11", b"new-hs256-secret-of-at-least-32-bytes")


def _key_set(*keys: tuple[str, bytes]) -> str:
    return json.dumps(
        {
            "keys": [
                {"kid": kid, "alg": "HS256", "k": base64.urlsafe_b64encode(k).decode()}
                for kid, k in keys
            ]
        }
    )


def _token(key: tuple[str, bytes]) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "scope": "jobs:read", "iss": ISS, "aud": AUD,
              "iat": now, "nbf": now - 1, "exp": now + 300}  # fmt: skip
    return jwt.encode(claims, key[1], algorithm="HS256", headers={"kid": key[0]})


def _status(api: RunningApi, key: tuple[str, bytes]) -> int:
    return api.call("GET", "/v1/jobs", headers={"Authorization": f"Bearer {_token(key)}"})[0]


@contextmanager
def _steady_requests(api: RunningApi) -> Iterator[list[int]]:
    """A bounded stream of requests (the admin key, valid throughout) while the body runs;
    the statuses, one per request."""
    statuses: list[int] = []
    stop = threading.Event()

    def run() -> None:
        for _ in range(3000):  # bounded, however long the body takes
            if stop.is_set():
                return
            try:
                statuses.append(api.call("GET", "/v1/jobs?limit=1")[0])
            except OSError as exc:  # a dropped connection: what must not happen
                statuses.append(-1)
                print("request failed:", exc)
            time.sleep(0.02)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(30)


def _jwt_env(service_env: dict[str, str], keys_file: Path, **more: str) -> dict[str, str]:
    return {
        **service_env,
        "COLLECTQ_JWT_KEYS_FILE": str(keys_file),
        "COLLECTQ_JWT_ISSUER": ISS,
        "COLLECTQ_JWT_AUDIENCE": AUD,
        **more,
    }


def test_jwt_key_set_rolls_over_from_its_file_without_a_restart(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    keys_file = tmp_path / "jwt_keys"
    keys_file.write_text(_key_set(OLD))
    env = _jwt_env(service_env, keys_file, COLLECTQ_SECRET_WATCH_INTERVAL="0.2")
    with running_api(env, tmp_path) as api:
        api.wait_ready()
        master = api.proc.pid
        assert _status(api, OLD) == 200
        assert _status(api, NEW) == 401
        with _steady_requests(api) as statuses:
            rewrite(keys_file, _key_set(OLD, NEW))  # 1. add the new key
            wait_for(lambda: _status(api, NEW) == 200, timeout=15, interval=0.1)
            assert _status(api, OLD) == 200  # 2. tokens of both verify; the issuer switches
            rewrite(keys_file, _key_set(NEW))  # 3. remove the old key
            wait_for(lambda: _status(api, OLD) == 401, timeout=15, interval=0.1)
            assert _status(api, NEW) == 200
            time.sleep(0.5)  # a few more requests after the last switch
        assert api.proc.poll() is None
        assert api.proc.pid == master  # the same master: reloaded, never restarted
        log = api.log.read_text()
    assert len(statuses) > 20
    assert set(statuses) == {200}, statuses
    assert log.count("API: reloading settings (changed: COLLECTQ_JWT_KEYS_FILE)") == 2


def test_sighup_by_hand_reloads_and_a_broken_file_is_refused(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """Watching off: SIGHUP alone reloads. A key set that no longer loads is refused (the
    old workers keep serving); the master's metrics listener answers after the reloads."""
    keys_file = tmp_path / "jwt_keys"
    keys_file.write_text(_key_set(OLD))
    metrics_port = free_port()
    env = _jwt_env(
        service_env,
        keys_file,
        COLLECTQ_SECRET_WATCH_INTERVAL="0",
        COLLECTQ_METRICS_PORT=str(metrics_port),
    )
    with running_api(env, tmp_path) as api:
        api.wait_ready()
        master = api.proc.pid
        rewrite(keys_file, '{"keys": [{"kid": "bad", "alg": "HS256", "k": "dG9vLXNob3J0"}]}')
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: "API: not reloading" in api.log.read_text(), timeout=15)
        assert _status(api, OLD) == 200  # still the previous key set

        rewrite(keys_file, _key_set(NEW))
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: _status(api, NEW) == 200, timeout=15, interval=0.1)
        # the previous workers finish their requests before they exit (graceful reload)
        wait_for(lambda: _status(api, OLD) == 401, timeout=15, interval=0.1)
        assert api.proc.pid == master
        assert api.proc.poll() is None
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
        assert "collectq_build_info" in body
        log = api.log.read_text()
    assert "COLLECTQ_JWT_KEYS" in log
    assert "dG9vLXNob3J0" not in log  # the refused value is never logged
    assert "API: reloading settings (changed: COLLECTQ_JWT_KEYS_FILE)" in log
