"""One job followed through the logs: the API under gunicorn and a real worker, JSON lines.

A request with an X-Request-ID submits a job (noop, and flaky failing once: a retry);
the API's and the worker's output are JSON lines, and every line about the job in the
worker carries its request id, owner, job id, task id and collector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.apiprocess import running_api
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

RID = "corr-test.42:a_b"


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
    env = {**service_env, "COLLECTQ_LOG_JSON": "true"}
    with running_api(env, tmp_path) as api:
        worker = start_worker("collect.noop,collect.flaky", concurrency=2, **env)
        api.wait_ready()
        token = api.token

        flaky = {"fail_times": 1}  # one retry
        body = {"target": "a.org", "collectors": ["noop", "flaky"], "options": {"flaky": flaky}}
        status, job, headers = api.call("POST", "/v1/jobs", body, {"X-Request-ID": RID})
        assert status == 202, job
        assert headers["X-Request-ID"] == RID
        job_id = job["id"]
        assert api.wait(job_id)["status"] == "succeeded"
        # an invalid id is replaced by a generated one, echoed and logged
        status, _, headers = api.call(
            "GET", "/v1/jobs?limit=1", None, {"X-Request-ID": "not valid!"}
        )
        generated = headers["X-Request-ID"]
        assert status == 200
        assert generated != "not valid!"
        assert len(generated) == 24

        def both_succeeded() -> bool:  # Celery's line follows the result the API showed
            text = worker.log_path.read_text()
            return all(f"{job_id}.{name}] succeeded" in text for name in ("noop", "flaky"))

        wait_for(both_succeeded, timeout=10)
        wait_for(lambda: generated in api.log.read_text(), timeout=10)
        api_text = api.log.read_text()
        api_lines = _json_lines(api_text, "api")
        worker_lines = _json_lines(worker.log_path.read_text(), "worker")

    # The API: gunicorn's own lines and the access lines, JSON; the job's request id.
    assert any(line["logger"].startswith("gunicorn") for line in api_lines)
    submit = [r for r in api_lines if r.get("request_id") == RID]
    assert [(r["logger"], r["method"], r["route"], r["status"]) for r in submit] == [
        ("collectq.access", "POST", "/v1/jobs", 202)
    ]
    assert submit[0]["owner"] == "tests"
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
        assert record["owner"] == "tests", record
        assert record["collector"] in ("noop", "flaky"), record
        assert record["task_id"] == f"{job_id}.{record['collector']}", record
    assert {r["collector"] for r in about_job} == {"noop", "flaky"}

    # No credential in any line of either process.
    for text in (api_text, worker.log_path.read_text()):
        assert token not in text
        assert token.rsplit("_", 1)[1] not in text
