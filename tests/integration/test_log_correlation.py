"""One job followed through the logs: the API under gunicorn and a real worker, JSON lines.

A request with an X-Request-ID submits a job (noop, and flaky failing once: a retry);
the API's and the worker's output are JSON lines, and every line about the job in the
worker carries its request id, owner, job id, task id and collector.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import REDIS_URL, ROOT, free_port, wait_for

pytestmark = pytest.mark.integration

RID = "corr-test.42:a_b"


def _call(
    port: int, method: str, path: str, token: str, body: Any = None, rid: str | None = None
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if rid is not None:
        headers["X-Request-ID"] = rid
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")
    except OSError:
        return 0, {}, None


def _json_lines(text: str, source: str) -> list[dict[str, Any]]:
    """Every non-empty line is one JSON object (no banner, no plain-text line)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"{source}: not a JSON line: {line!r}")
    return out


def test_one_request_id_follows_a_job_from_the_api_to_the_worker(
    service_env, start_worker, tmp_path: Path
) -> None:
    from app.auth.apikeys import KeyStore

    env = {**service_env, "COLLECTQ_LOG_JSON": "true", "COLLECTQ_API_WORKERS": "1"}
    env["COLLECTQ_METRICS_PORT"] = str(free_port())  # the API's metrics listener: not 9464
    store = KeyStore(redis.Redis.from_url(REDIS_URL), service_env["COLLECTQ_REDIS_PREFIX"])
    _, token = store.create(owner="logs", name="logs", scopes=["admin"])
    port = free_port()
    api_log = tmp_path / "api.log"
    with api_log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        worker = start_worker("collect.noop,collect.flaky", concurrency=2, **env)
        wait_for(lambda: _call(port, "GET", "/health", token)[0] == 200, timeout=30, interval=0.1)

        flaky = {"fail_times": 1}  # one retry
        body = {"target": "a.org", "collectors": ["noop", "flaky"], "options": {"flaky": flaky}}
        status, headers, job = _call(port, "POST", "/v1/jobs", token, body, rid=RID)
        assert status == 202, job
        assert headers["X-Request-ID"] == RID
        job_id = job["id"]
        status, _, done = _call(port, "GET", f"/v1/jobs/{job_id}?wait=20", token)
        assert done["status"] == "succeeded", done
        # an invalid id is replaced by a generated one, echoed and logged
        status, headers, _ = _call(port, "GET", "/v1/jobs?limit=1", token, rid="not valid!")
        generated = headers["X-Request-ID"]
        assert status == 200
        assert generated != "not valid!"
        assert len(generated) == 24

        def both_succeeded() -> bool:  # Celery's line follows the result the API showed
            text = worker.log_path.read_text()
            return all(f"{job_id}.{name}] succeeded" in text for name in ("noop", "flaky"))

        wait_for(both_succeeded, timeout=10)
        wait_for(lambda: generated in api_log.read_text(), timeout=10)
        api_lines = _json_lines(api_log.read_text(), "api")
        worker_lines = _json_lines(worker.log_path.read_text(), "worker")
    finally:
        api.terminate()
        api.wait(30)

    # The API: gunicorn's own lines and the access lines, JSON; the job's request id.
    assert any(line["logger"].startswith("gunicorn") for line in api_lines)
    submit = [r for r in api_lines if r.get("request_id") == RID]
    assert [(r["logger"], r["method"], r["route"], r["status"]) for r in submit] == [
        ("collectq.access", "POST", "/v1/jobs", 202)
    ]
    assert submit[0]["owner"] == "logs"
    assert isinstance(submit[0]["duration_ms"], float)
    assert any(r.get("request_id") == generated for r in api_lines)

    # The worker: every line a task of the job logs while it runs carries all five.
    about_job = [r for r in worker_lines if r.get("job_id") == job_id]
    ran = [r for r in about_job if r["logger"] != "celery.worker.strategy"]  # "received": main
    messages = " | ".join(r["message"] for r in ran)
    assert "retry" in messages, messages  # flaky failed once: a retried message
    assert messages.count("succeeded") == 2, messages
    for record in ran:
        assert record["request_id"] == RID, record
        assert record["owner"] == "logs", record
        assert record["collector"] in ("noop", "flaky"), record
        assert record["task_id"] == f"{job_id}.{record['collector']}", record
    assert {r["collector"] for r in about_job} == {"noop", "flaky"}

    # No credential in any line of either process.
    for text in (api_log.read_text(), worker.log_path.read_text()):
        assert token not in text
        assert token.rsplit("_", 1)[1] not in text
