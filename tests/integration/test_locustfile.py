"""The load test (benchmarks/locustfile.py) against a real API process and a real worker,
run as a user runs it: `locust --headless` in a subprocess, its CSV read back.

Every request of the mix is made and answers; idempotent repeats answer their first job
(the locustfile fails them otherwise); a key whose submit limit runs out gets 429s that
are counted under a name of their own, not as failures.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.apiprocess import running_api
from tests.conftest import FIXTURE_LIMITS, REDIS_URL, ROOT

pytestmark = pytest.mark.integration

MIX = {
    "POST /v1/jobs",
    "POST /v1/jobs [idempotent repeat]",
    "POST /v1/jobs?wait",
    "GET /v1/jobs/{id}",
    "GET /v1/jobs/{id}?wait",
    "GET /v1/jobs/{id}/events",
    "GET /v1/jobs?limit",
}


def _locust(port: int, token: str, out: Path, users: int, seconds: int) -> dict[str, Any]:
    """Run the locustfile headless; its exit code and stats rows by "TYPE name"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTQ_")}
    env |= {
        "COLLECTQ_API_KEY": token,
        "COLLECTQ_LOAD_TARGETS": "t{n}.example.org",  # noop: never resolved
        "COLLECTQ_LOAD_COLLECTORS": "noop",
        "COLLECTQ_LOAD_THINK": "0.02,0.08",
        "COLLECTQ_LOAD_WAIT": "2",
    }
    argv = [sys.executable, "-m", "locust", "-f", "benchmarks/locustfile.py", "--headless"]
    argv += ["--host", f"http://127.0.0.1:{port}", "--users", str(users)]
    argv += ["--spawn-rate", str(users), "--run-time", f"{seconds}s", "--only-summary"]
    argv += ["--csv", str(out / "load")]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=seconds + 60)
    with (out / "load_stats.csv").open(newline="") as f:
        rows = {f"{r['Type']} {r['Name']}".strip(): r for r in csv.DictReader(f)}
    return {"code": done.returncode, "rows": rows, "log": done.stderr.decode()[-3000:]}


def test_the_mix_makes_every_request_and_none_fails(
    service_env: dict[str, str], start_worker: Any, tmp_path: Path
) -> None:
    with running_api(service_env, tmp_path) as api:
        start_worker("collect.noop", concurrency=4)
        api.wait_ready()
        run = _locust(api.port, api.token, tmp_path, users=4, seconds=8)
    rows = run["rows"]
    assert set(rows) >= MIX, (set(rows), run["log"])
    for name in MIX:
        assert int(rows[name]["Request Count"]) > 0, name
    assert rows["Aggregated"]["Failure Count"] == "0", run["log"]
    assert run["code"] == 0, run["log"]


def test_a_429_is_its_own_outcome_not_a_failure(
    service_env: dict[str, str], start_worker: Any, tmp_path: Path
) -> None:
    from app.auth.apikeys import KeyStore

    limits = {**FIXTURE_LIMITS, "submit": "3/minute"}
    _, token = KeyStore(
        redis.Redis.from_url(REDIS_URL), service_env["COLLECTQ_REDIS_PREFIX"]
    ).create(owner="load", name="load", scopes=["jobs:read", "jobs:write"], rate_limits=limits)
    with running_api(service_env, tmp_path) as api:
        start_worker("collect.noop", concurrency=4)
        api.wait_ready()
        run = _locust(api.port, token, tmp_path, users=3, seconds=6)
    rows = run["rows"]
    assert int(rows["POST /v1/jobs"]["Request Count"]) <= 3
    limited = rows.get("POST /v1/jobs [429]", {})
    assert int(limited.get("Request Count", 0)) > 0, (list(rows), run["log"])
    assert rows["Aggregated"]["Failure Count"] == "0", run["log"]
    assert run["code"] == 0, run["log"]
