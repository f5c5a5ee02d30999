"""`collectq flower`: basic auth from settings; never open in staging/prod."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_for

pytestmark = pytest.mark.integration

PROD = {
    "COLLECTQ_ENV": "prod",
    "COLLECTQ_REDIS_URL": "redis://:a-long-redis-password@127.0.0.1:1/0",
    "COLLECTQ_BROKER_URL": "amqp://collectq:a-long-broker-password@127.0.0.1:1/collectq",
    "COLLECTQ_SECRET_KEY": "k" * 40,
}


def _status(url: str, auth: str | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        err.close()
        return err.code
    except OSError:
        return 0


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLECTQ_", "FLOWER_"))}
    return {**env, **extra}


@pytest.mark.parametrize("profile", ["prod", "staging"])
def test_flower_refuses_to_start_open_in_hardened_profiles(profile) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "flower"],
        cwd=ROOT, env=_clean_env(**{**PROD, "COLLECTQ_ENV": profile}),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"COLLECTQ_FLOWER_BASIC_AUTH: required in the {profile} profile" in result.stderr


def test_flower_refuses_open_beyond_loopback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "flower"],
        cwd=ROOT, env=_clean_env(COLLECTQ_FLOWER_HOST="0.0.0.0"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "COLLECTQ_FLOWER_BASIC_AUTH" in result.stderr


@contextmanager
def running_flower(service_env: dict[str, str], log: Path, **env: str) -> Iterator[tuple[str, int]]:
    """`collectq flower` on a free loopback port with `service_env` and `env`, until it
    answers: (its base URL, its pid). Stopped afterwards."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "flower", "--port", str(port)],
            cwd=ROOT, env=_clean_env(**service_env, **env), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _status(f"{base}/healthcheck") != 0, timeout=40, interval=0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def test_flower_runs_behind_basic_auth(service_env, tmp_path: Path) -> None:
    log = tmp_path / "flower.log"
    auth = {"COLLECTQ_FLOWER_BASIC_AUTH": "ops:a-flower-password"}
    with running_flower(service_env, log, **auth) as (base, pid):
        assert _status(f"{base}/") == 401
        assert _status(f"{base}/api/workers") == 401
        assert _status(f"{base}/", "ops:wrong") == 401
        assert _status(f"{base}/", "ops:a-flower-password") == 200
        # open by Flower's design (Prometheus, probes): never routed publicly (docs/decisions.md)
        assert _status(f"{base}/healthcheck") == 200
        assert _status(f"{base}/metrics") == 200
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"a-flower-password" not in cmdline  # passed by env, invisible to `ps`
    assert "a-flower-password" not in log.read_text()


def test_flower_takes_a_new_password_from_its_file_without_a_restart(
    service_env, tmp_path: Path
) -> None:
    """`collectq flower` starts Flower again when its password file changes (Flower holds
    no state); the `collectq flower` process itself stays, the old password stops working."""
    log, secret = tmp_path / "flower.log", tmp_path / "flower_basic_auth"
    secret.write_text("ops:an-old-flower-password\n")
    env = {"COLLECTQ_FLOWER_BASIC_AUTH_FILE": str(secret), "COLLECTQ_SECRET_WATCH_INTERVAL": "0.2"}
    with running_flower(service_env, log, **env) as (base, pid):
        assert _status(f"{base}/", "ops:an-old-flower-password") == 200
        tmp = secret.with_suffix(".new")
        tmp.write_text("ops:a-new-flower-password\n")
        os.replace(tmp, secret)
        wait_for(lambda: _status(f"{base}/", "ops:a-new-flower-password") == 200, timeout=40)
        assert _status(f"{base}/", "ops:an-old-flower-password") == 401
        status = Path(f"/proc/{pid}/status").read_text()  # the same `collectq flower`, running
        assert "State:\tZ" not in status
    text = log.read_text()
    assert "flower: reloading settings (changed: COLLECTQ_FLOWER_BASIC_AUTH_FILE)" in text
    assert "flower-password" not in text
