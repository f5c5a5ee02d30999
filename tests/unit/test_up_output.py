"""`collectq up`'s terminal: which child lines are echoed, prefixed; the rest in log files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from app.cli.flowercmd import flower_access, flower_env
from app.cli.upoutput import ChildLog, EchoFilter, line_level, render_banner, rotate_logs
from app.cli.upplan import Child, plan_up
from app.settings import Settings, load_settings
from tests.conftest import free_port

DEV_TEXT = "05:24:13.331 WARNING collectq.metrics: listener not started"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        (DEV_TEXT, "WARNING"),
        ("2026-11-30 05:19:56,972 INFO celery.beat: beat: Starting...", "INFO"),
        ('{"ts": "x", "level": "error", "logger": "collectq", "event": "boom"}', "ERROR"),
        ('{"ts": "x", "level": "info", "event": "a WARNING in the text"}', "INFO"),
        ("[2026-11-30 05:19:50 +0000] [9502] [CRITICAL] WORKER TIMEOUT (pid:9508)", "CRITICAL"),
        ('127.0.0.1 - - [30/Nov/2026:05:19:55 +0000] "GET /ERROR HTTP/1.1" 404 9', "INFO"),
        ("/x/celery/platforms.py:893: SecurityWarning: You're running the worker", "WARNING"),
        ("Traceback (most recent call last):", "ERROR"),
        ("collectq: COLLECTQ_AUTH=off is only allowed for the API that ...", "WARNING"),
        ('  File "/x/app.py", line 3, in <module>', None),  # continues a record
        ("worker: Warm shutdown (MainProcess)", None),
    ],
)
def test_line_level_reads_each_format_the_children_write(line: str, level: str | None) -> None:
    assert line_level(line) == level


def test_echo_filter_keeps_a_warning_with_its_traceback_and_drops_info() -> None:
    echo = EchoFilter()
    lines = [
        "worker: Warm shutdown (MainProcess)",  # plain output before any record: quiet
        "05:00:00.000 INFO    celery.apps.worker: ready.",
        "  continued info",
        "05:00:01.000 ERROR   collectors.runner: collector noop crashed",
        "Traceback (most recent call last):",
        '  File "/x/noop.py", line 3, in collect',
        "ValueError: boom",
        "05:00:02.000 INFO    celery.worker: done",
    ]
    shown = [line for line in lines if echo(line)]
    assert shown == lines[3:7]


def test_child_log_writes_every_line_and_echoes_only_warnings_prefixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = (
        "import sys\n"
        "print('05:00:00.000 INFO    x: collect.http@vm ready.', flush=True)\n"
        "sys.stdout.write('x' * 200000 + '\\n')\n"  # more than a pipe holds: never blocks
        "sys.stdout.flush()\n"
        "print('05:00:01.000 WARNING x: careful', file=sys.stderr, flush=True)\n"
        "print('  the warning goes on', file=sys.stderr, flush=True)\n"
        "print('05:00:02.000 INFO    x: bye')\n"
    )
    log = ChildLog("worker http", tmp_path, width=len("worker maintenance"))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    log.follow(proc.stdout)
    assert proc.wait(20) == 0
    log.join(10)
    written = (tmp_path / "worker-http.log").read_text().splitlines()
    assert written[0] == "05:00:00.000 INFO    x: collect.http@vm ready."
    assert written[-1] == "05:00:02.000 INFO    x: bye"
    assert len(written) == 5
    assert log.worker_ready.is_set()  # Flower starts once every worker said so
    assert capsys.readouterr().err.splitlines() == [
        "worker http        | 05:00:01.000 WARNING x: careful",
        "worker http        |   the warning goes on",
    ]
    assert log.tail(1) == [f"worker http        | {written[-1]}"]


def test_rotate_logs_keeps_one_previous_run(tmp_path: Path) -> None:
    (tmp_path / "api.log").write_text("run 1\n")
    rotate_logs(tmp_path, ["api", "worker http"])
    assert (tmp_path / "api.log.1").read_text() == "run 1\n"
    assert not (tmp_path / "api.log").exists()


def test_banner_aligns_its_rows() -> None:
    text = render_banner("collectq up: ready", [("API", "http://a"), ("processes", "api")])
    assert text == "collectq up: ready\n  API        http://a\n  processes  api\n"


# The open/auth rule that `collectq flower` and `collectq up` share.


@pytest.fixture
def dev(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("COLLECTQ_ENV", "dev")
    return load_settings()


def test_flower_runs_open_only_on_loopback_in_dev(dev) -> None:
    access = flower_access(dev)
    assert access.refusal is None
    assert access.basic_auth is None
    assert access.state.startswith("OPEN")
    refused = flower_access(replace(dev, flower_host="0.0.0.0"))
    assert refused.refusal is not None
    assert "beyond loopback" in refused.refusal


@pytest.mark.parametrize("profile", ["staging", "prod"])
def test_flower_never_runs_open_in_hardened_profiles(dev, profile: str) -> None:
    access = flower_access(replace(dev, env=profile))
    assert access.refusal is not None
    assert f"required in the {profile} profile" in access.refusal


@pytest.mark.parametrize("profile", ["dev", "prod"])
def test_flower_with_credentials_runs_behind_basic_auth(dev, profile: str) -> None:
    access = flower_access(replace(dev, env=profile, flower_basic_auth="ops:pw", flower_host="::"))
    assert access.refusal is None
    assert access.basic_auth == "ops:pw"
    env = flower_env({"FLOWER_UNAUTHENTICATED_API": "true", "PATH": "/bin"}, access)
    assert env == {"FLOWER_BASIC_AUTH": "ops:pw", "PATH": "/bin"}  # the caller's FLOWER_* gone


def test_compose_flower_runs_behind_basic_auth(monkeypatch, tmp_path: Path) -> None:
    """docker-compose.yml's flower service, its secrets filled in: Flower starts (prod)
    behind basic auth on the container's interface."""
    from tests.composefile import load_compose

    flower = load_compose()["services"]["flower"]
    samples = {
        "broker_url": "amqp://collectq:a-long-rabbit-password@rabbitmq:5672//",
        "redis_url": "redis://:a-long-redis-password@redis:6379/0",
        "secret_key": "s" * 48,
        "flower_basic_auth": "ops:a-long-flower-password",
    }
    for name in flower["secrets"]:
        (tmp_path / name).write_text(samples[name] + "\n")
    for var, value in flower["environment"].items():
        if var.endswith("_FILE"):
            value = str(tmp_path / value.removeprefix("/run/secrets/"))
        monkeypatch.setenv(var, str(value))
    settings = load_settings()
    access = flower_access(settings)
    assert (settings.env, settings.flower_host) == ("prod", "0.0.0.0")
    assert (access.refusal, access.basic_auth) == (None, "ops:a-long-flower-password")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]  # the host's loopback only


# What `up` runs and says (no process started).


def test_up_plan_gives_each_worker_a_metrics_port_and_starts_flower_last(dev) -> None:
    settings = replace(dev, metrics_port=19464, flower_port=free_port())
    plan = plan_up(settings, embedded_redis=6390)
    roles = [c.name for c in plan.children]
    assert roles[0] == "api"
    assert roles[-2:] == ["beat", "flower"]
    workers = [c for c in plan.children if c.name.startswith("worker ")]
    assert [c.env["COLLECTQ_WORKER_METRICS_PORT"] for c in workers] == [
        str(19465 + i) for i in range(len(workers))
    ]
    assert all("-q" in c.argv for c in workers)  # no Celery banner
    assert [c.name for c in plan.children if c.after_workers] == ["flower"]
    rows = dict(plan.rows)
    assert rows["metrics"].startswith("http://127.0.0.1:19464/metrics (API); workers on")
    assert rows["Flower"].startswith(f"http://127.0.0.1:{settings.flower_port}  (OPEN")
    health = {c.name: c.health for c in plan.children if c.health}
    assert health == {
        "api": f"http://127.0.0.1:{settings.api_port}/health",
        "flower": f"http://127.0.0.1:{settings.flower_port}/healthcheck",
    }
    assert [c.name for c in plan.children if c.optional] == ["flower"]


def test_up_plan_runs_without_flower_and_says_why(dev) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        plan = plan_up(replace(dev, flower_port=port, metrics_port=0), embedded_redis=None)
    assert "flower" not in [c.name for c in plan.children]
    rows = dict(plan.rows)
    assert (
        rows["Flower"]
        == f"not started: port {port} on 127.0.0.1 is in use (set COLLECTQ_FLOWER_PORT)"
    )
    assert "metrics" not in rows  # the API's listener off, no worker port set
    assert all(not c.env for c in plan.children)


@pytest.mark.parametrize("optional", [True, False])
def test_a_child_that_keeps_failing_stops_up_unless_optional(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], optional: bool
) -> None:
    from app.cli.up import MAX_FAILURES, _tend

    script = "print('05:00:00.000 ERROR   x: no port'); raise SystemExit(3)"
    log = ChildLog("flower", tmp_path, width=6)
    child = Child("flower", [sys.executable, "-c", script], log, optional=optional)
    env = dict(os.environ)
    child.start(env)
    now, verdicts = 0.0, []
    for _ in range(MAX_FAILURES):
        assert child.proc is not None
        child.proc.wait(20)
        verdicts.append(_tend(child, env, now))  # notices the exit, schedules a restart
        if child.restart_at:
            now = child.restart_at  # the backoff is over
            assert _tend(child, env, now)  # restarts it
    log.join(10)
    assert verdicts == [True] * (MAX_FAILURES - 1) + [optional]
    assert child.given_up is optional
    err = capsys.readouterr().err
    then = "left stopped, the rest runs on" if optional else "stopping"
    assert f"collectq up: flower keeps failing ({MAX_FAILURES}x in a minute); {then}" in err
    assert "collectq up: flower exited (3); restarting in 1s; its last lines:" in err
    assert "flower | 05:00:00.000 ERROR   x: no port" in err
