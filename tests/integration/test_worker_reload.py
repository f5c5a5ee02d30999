"""A worker reloads on SIGHUP by hand: a warm restart in place (`app/worker_reload.py`), and
none at all when the configuration no longer loads (the worker keeps working as it was)."""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.rollover import rewrite

pytestmark = pytest.mark.integration

JOB = {"target": "example.org", "collectors": ["noop"], "fresh": True}


def _key_set(kid: str, secret: bytes) -> str:
    k = base64.urlsafe_b64encode(secret).decode()
    return json.dumps({"keys": [{"kid": kid, "alg": "HS256", "k": k}]})


def _run_one(client: Any) -> str:
    resp = client.post("/v1/jobs", json=JOB)
    assert resp.status_code == 202, resp.json
    done = client.get(f"{resp.headers['Location']}?wait=20")
    return str(done.json["status"])


def test_sighup_restarts_a_worker_in_place_and_a_broken_file_is_refused(
    make_app, start_worker, tmp_path: Path
) -> None:
    keys = tmp_path / "jwt_keys"
    keys.write_text(_key_set("k1", b"a-first-hs256-secret-of-32-bytes!!"))
    jwt_env = {
        "COLLECTQ_JWT_KEYS_FILE": str(keys),
        "COLLECTQ_JWT_ISSUER": "https://idp.test",
        "COLLECTQ_JWT_AUDIENCE": "collectq",
    }
    worker = start_worker("collect.noop", COLLECTQ_SECRET_WATCH_INTERVAL="0", **jwt_env)
    client = make_app(**jwt_env).test_client()
    pid = worker.proc.pid
    assert _run_one(client) == "succeeded"

    rewrite(keys, '{"keys": [{"kid": "k2", "alg": "HS256", "k": "dG9vLXNob3J0"}]}')
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "worker: not reloading" in worker.log_path.read_text(), timeout=15)
    assert _run_one(client) == "succeeded"  # still the same worker, still working
    assert worker.log_path.read_text().count(" ready.") == 1

    rewrite(keys, _key_set("k2", b"a-second-hs256-secret-of-32-bytes!"))
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: worker.log_path.read_text().count(" ready.") == 2, timeout=30)
    assert worker.proc.poll() is None
    assert worker.proc.pid == pid  # restarted in place: exec, not a new process
    assert _run_one(client) == "succeeded"
    log = worker.log_path.read_text()
    assert "worker: reloading settings (changed: COLLECTQ_JWT_KEYS_FILE)" in log
    assert "COLLECTQ_JWT_KEYS" in log.split("worker: not reloading", 1)[1].splitlines()[0]
    assert "dG9vLXNob3J0" not in log
