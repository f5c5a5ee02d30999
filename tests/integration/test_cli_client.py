"""The command-line client (`collectq jobs …`) against a live service: a gunicorn API and
a worker with the test collectors. The client runs in this process (click's runner, no
terminal), and as its own process where what a shell sees matters (errors, exit codes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.apiprocess import RunningApi
from tests.conftest import ROOT, free_port
from tests.metricsenv import live_stack

TARGET = "http://127.0.0.1/"


@pytest.fixture(scope="module")
def api(vhost: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    tmp = tmp_path_factory.mktemp("cli-client")
    with live_stack(vhost, tmp, api_workers=1, queues="collect.noop,collect.flaky") as stack:
        yield stack.running


def _env(api: RunningApi | None, url: str | None) -> dict[str, str]:
    """The client's environment: the service's URL and key (never on argv)."""
    env = {"COLLECTQ_CLIENT_CONFIG": os.devnull}  # not the developer's own config file
    if api is not None:
        env |= {"COLLECTQ_URL": f"http://127.0.0.1:{api.port}", "COLLECTQ_API_KEY": api.token}
    if url is not None:
        env["COLLECTQ_URL"] = url
    return env


def cq(api: RunningApi | None, *args: str, url: str | None = None) -> Done:
    """`collectq ARGS` run in this process (click's runner: stdout is no terminal)."""
    from app.cli.main import main

    result = CliRunner().invoke(main, list(args), env=_env(api, url), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback would have reached the user
    return Done(result.exit_code, result.stdout, result.stderr)


def cq_process(api: RunningApi | None, *args: str, url: str | None = None) -> Done:
    """`collectq ARGS` as its own process, as a shell runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTQ_")}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env={**base, **_env(api, url)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def no_traceback(done: Done) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


def test_submit_wait_succeeded_exits_0_with_the_final_envelope(api: RunningApi) -> None:
    done = cq(api, "jobs", "submit", TARGET, "-c", "noop,flaky", "-o", "flaky.fail_times=1",
              "--label", "team=cli", "--wait")  # fmt: skip
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["status"] == "succeeded"
    assert envelope["labels"] == {"team": "cli"}
    assert envelope["results"]["flaky"]["attempts"] == 2
    assert envelope == api.call("GET", f"/v1/jobs/{envelope['id']}")[1]  # the API's own JSON


def test_submit_wait_exits_1_when_the_job_fails(api: RunningApi) -> None:
    done = cq(api, "jobs", "submit", TARGET, "-c", "flaky", "-o", "flaky.bug=boom", "--wait")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["status"] == "failed"
    no_traceback(done)


def test_get_list_cancel_and_a_second_cancel_is_a_conflict(api: RunningApi) -> None:
    # no worker consumes collect.http here: the job stays queued until cancelled
    done = cq(api, "jobs", "submit", TARGET, "-c", "http", "--label", "case=cancel", "-q")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert job_id.startswith("j_")
    got = cq(api, "jobs", "get", job_id)
    assert got.returncode == 0
    assert json.loads(got.stdout)["id"] == job_id
    listed = cq(api, "jobs", "list", "--label", "case=cancel", "--json")
    assert [e["id"] for e in json.loads(listed.stdout)["items"]] == [job_id]
    table = cq(api, "jobs", "list", "--label", "case=cancel")
    assert job_id in table.stdout
    assert "STATUS" in table.stdout
    cancelled = cq(api, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    again = cq(api, "jobs", "cancel", job_id)
    assert again.returncode == 3
    assert again.stderr.startswith("collectq: Conflict (409): job ")
    assert "already finished as cancelled" in again.stderr
    no_traceback(again)


def test_a_422_prints_title_detail_and_each_field(api: RunningApi) -> None:
    done = cq_process(api, "jobs", "submit", "not a target", "-c", "noop,Bad")
    assert done.returncode == 3
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "collectq: Unprocessable Entity (422): the request has invalid fields"
    assert any(line.startswith("  target: ") for line in lines), done.stderr
    assert "  collectors.1: not a collector name" in lines
    assert any(line.startswith("  request id: ") for line in lines)
    no_traceback(done)


def test_a_missing_key_says_where_a_key_comes_from(api: RunningApi) -> None:
    done = cq(None, "jobs", "list", url=f"http://127.0.0.1:{api.port}")
    assert done.returncode == 3
    assert "(401)" in done.stderr.splitlines()[0]
    assert "no API key: set COLLECTQ_API_KEY" in done.stderr


def test_an_unreachable_url_is_named() -> None:
    port = free_port()  # bound then closed: nothing listens
    done = cq_process(
        None, "jobs", "get", "j_01JD2X5K3V9W8Q7R6T5Y4U3I2O", url=f"http://127.0.0.1:{port}"
    )
    assert done.returncode == 4
    assert (
        done.stderr.strip() == f"collectq: cannot reach http://127.0.0.1:{port}: Connection refused"
    )
    no_traceback(done)


def _lines_of(out: str, name: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[") and f"] {name} " in line]


SLOW_FIRST = ("-o", "flaky.fail_times=1", "-o", "flaky.sleep=1.2", "-o", "flaky.slow_attempts=1")


def _watched(api: RunningApi, *flags: str) -> tuple[str, list[str], str]:
    """Submit noop + a flaky collector that fails its slow first attempt, watch it (no
    terminal); (job id, the flaky collector's statuses in order, the output)."""
    job_id = cq(api, "jobs", "submit", TARGET, "-c", "noop,flaky", "-q", *SLOW_FIRST).stdout
    job_id = job_id.strip()
    done = cq(api, "jobs", "watch", job_id, *flags)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # no cursor movements into a pipe
    lines = out.splitlines()
    assert lines[0] == f"{job_id}  {TARGET}"
    assert lines[-1].startswith(f"{job_id}  succeeded (")
    flaky = _lines_of(out, "flaky")
    assert len(set(flaky)) == len(flaky)  # each change once
    assert "attempt 2" in flaky[-1]
    assert _lines_of(out, "noop")[-1].split()[2] == "succeeded"
    return job_id, [line.split()[2] for line in flaky], out


def test_watch_follows_the_event_stream_through_every_transition(api: RunningApi) -> None:
    _, statuses, out = _watched(api)
    assert statuses == ["queued", "running", "retrying", "running", "succeeded"], out
    assert [line.split()[2] for line in _lines_of(out, "noop")] == [
        "queued",
        "running",
        "succeeded",
    ]
    # an event has no duration: the outcome's line shows the result read from the job (a
    # retry's error shows too when the job is still retrying at that read: not asserted)
    assert re.search(r"flaky  succeeded  \d+\.\d\d s  attempt 2$", out, re.MULTILINE), out


def test_watch_by_long_polling_shows_the_changes_it_sees(api: RunningApi) -> None:
    _, statuses, out = _watched(api, "--poll")
    assert statuses[0] in ("queued", "running"), out
    assert statuses[-1] == "succeeded"
    assert "running" in statuses


def test_watch_exits_1_for_a_failed_job(api: RunningApi, tmp_path: Path) -> None:
    sub = cq(api, "jobs", "submit", TARGET, "-c", "flaky", "-o", "flaky.bug=boom", "-q")
    done = cq(api, "jobs", "watch", sub.stdout.strip(), "--json")
    assert done.returncode == 1
    envelope: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    assert envelope["results"]["flaky"]["error"]["type"]


def test_schedules_create_list_pause_resume_run_delete(api: RunningApi) -> None:
    created = cq(api, "schedules", "create", TARGET, "-c", "noop", "--every", "1h",
                 "--name", "cli", "--timezone", "Europe/Berlin", "--label", "via=cli",
                 "--days", "mon,tue", "--hours", "08:00-18:00")  # fmt: skip
    assert created.returncode == 0, created.stderr
    schedule = json.loads(created.stdout)
    sid = schedule["id"]
    assert schedule["trigger"] == {"interval": 3600}
    assert schedule["window"] == {"days": ["mon", "tue"], "start": "08:00", "end": "18:00"}
    assert (schedule["timezone"], schedule["job"]["labels"]) == ("Europe/Berlin", {"via": "cli"})
    listed = cq(api, "schedules", "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(sid))
    assert row.split()[1:4] == ["active", "every", "3600"]
    paused = cq(api, "schedules", "pause", sid)
    assert json.loads(paused.stdout)["paused"] is True
    assert json.loads(cq(api, "schedules", "resume", sid).stdout)["paused"] is False
    ran = cq(api, "schedules", "run", sid, "--wait")
    assert ran.returncode == 0, ran.stderr
    job = json.loads(ran.stdout)
    assert (job["status"], job["schedule_id"]) == ("succeeded", sid)
    runs = json.loads(cq(api, "schedules", "runs", sid).stdout)
    assert [r["job_id"] for r in runs["items"]] == [job["id"]]
    deleted = cq(api, "schedules", "delete", sid)
    assert (deleted.returncode, deleted.stderr.strip()) == (0, f"deleted {sid}")
    gone = cq(api, "schedules", "get", sid)
    assert gone.returncode == 3
    assert "(404)" in gone.stderr


def test_schedules_create_refusal_names_the_nested_field(api: RunningApi) -> None:
    done = cq(api, "schedules", "create", TARGET, "-c", "noop", "--cron", "61 * * * *")
    assert done.returncode == 3
    assert "  trigger.cron: " in done.stderr
    usage = cq(api, "schedules", "create", TARGET, "-c", "noop")
    assert usage.returncode == 2
    assert "give one of --cron, --every" in usage.stderr


def test_idempotency_key_and_max_age_reach_the_api(api: RunningApi) -> None:
    first = cq(api, "jobs", "submit", TARGET, "-c", "noop", "--idempotency-key", "k1", "-q")
    again = cq(api, "jobs", "submit", TARGET, "-c", "noop", "--idempotency-key", "k1", "-q")
    assert first.stdout == again.stdout
    other = cq(api, "jobs", "submit", TARGET, "-c", "flaky", "--idempotency-key", "k1")
    assert other.returncode == 3  # the same key with another body
    assert "(422)" in other.stderr
    done = cq(
        api, "jobs", "submit", TARGET, "-c", "flaky", "-o", "flaky.sleep=0.01", "--wait", "-q"
    )
    assert done.returncode == 0, done.stderr
    reused = cq(
        api, "jobs", "submit", TARGET, "-c", "flaky", "-o", "flaky.sleep=0.01", "--max-age", "10m"
    )
    assert json.loads(reused.stdout)["id"] == done.stdout.strip()
    slow = ("jobs", "submit", TARGET, "-c", "flaky", "-o", "flaky.sleep=1", "-q")
    running = cq(api, *slow).stdout
    assert cq(api, *slow).stdout == running  # identical and in flight: that job
    assert cq(api, *slow, "--fresh").stdout != running


def test_keys_rotate_self_over_the_api(api: RunningApi) -> None:
    """`collectq keys rotate --self`: a client (a CI job) replaces its own key, no admin."""
    from app.cli.main import main

    status, created, _ = api.call(
        "POST", "/v1/keys", {"owner": "ci", "name": "runner", "scopes": ["jobs:read"]}
    )
    assert status == 201
    env = _env(api, None) | {"COLLECTQ_API_KEY": created["token"]}
    done = CliRunner().invoke(main, ["keys", "rotate", "--self", "--overlap", "1h"], env=env)
    assert done.exit_code == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["previous"]["prefix"] == created["prefix"]
    assert out["previous"]["state"] == "rotating"
    new = out["key"]["token"]
    for token in (created["token"], new):  # both work during the overlap
        assert api.call("GET", "/v1/jobs", headers={"Authorization": f"Bearer {token}"})[0] == 200
    again = CliRunner().invoke(main, ["keys", "rotate", "--self"], env=env)
    assert again.exit_code == 3
    assert again.stderr.startswith("collectq: Conflict (409): key ")
    quiet = CliRunner().invoke(
        main, ["keys", "rotate", "--self", "-q"], env=env | {"COLLECTQ_API_KEY": new}
    )
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.stdout.strip().startswith("cq_")
    assert "{" not in quiet.stdout  # the token alone, for a secret store
    usage = CliRunner().invoke(main, ["keys", "rotate", "--self", "abc"], env=env)
    assert usage.exit_code == 2
