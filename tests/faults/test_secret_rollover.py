"""The broker password rolled over under a running API and worker, losing no job.

On the fault tests' own RabbitMQ node (the shared broker's users are never touched): a
second user with the same permissions on the vhost, ``COLLECTQ_BROKER_URL_FILE`` switched to
it, wait until the old user has no connection left (the processes reloaded), delete the old
user (docs/operations.md, "Rotating secrets"). Jobs are submitted all the while.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.apiprocess import running_api
from tests.conftest import Worker, wait_for
from tests.faults.conftest import tally
from tests.faults.services import RabbitNode, RedisServer
from tests.rollover import JobStream, assert_rolled_over, assert_still_running, rewrite

pytestmark = pytest.mark.faults

JOB = {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"sleep": 0.3}}}


def _add_user(rabbit: RabbitNode, vhost: str, user: str, password: str) -> None:
    for args in (("add_user", user, password), ("set_permissions", "-p", vhost, user, *[".*"] * 3)):
        done = rabbit.ctl(*args)
        assert done.returncode == 0, done.stderr


def _users(rabbit: RabbitNode) -> set[str]:
    """The users of the node's client connections."""
    done = rabbit.ctl("-q", "list_connections", "user")
    assert done.returncode == 0, done.stderr
    return {line.strip() for line in done.stdout.splitlines()[1:] if line.strip()}


def test_broker_password_rolls_over_under_api_and_worker_with_no_job_lost(
    rabbit: RabbitNode,
    redis_server: RedisServer,
    fault_env: dict[str, str],
    fault_report: Callable[[dict[str, Any]], None],
    tmp_path: Path,
) -> None:
    vhost = fault_env["COLLECTQ_BROKER_URL"].rsplit("/", 1)[1]
    url = f"amqp://{{}}@127.0.0.1:{rabbit.port}/{vhost}"
    _add_user(rabbit, vhost, "cq_a", "pw-a")
    url_file = tmp_path / "broker_url"
    url_file.write_text(url.format("cq_a:pw-a"))
    env = {k: v for k, v in fault_env.items() if k != "COLLECTQ_BROKER_URL"}
    env |= {"COLLECTQ_BROKER_URL_FILE": str(url_file), "COLLECTQ_SECRET_WATCH_INTERVAL": "0.2"}

    with running_api(env, tmp_path, store_url=redis_server.url) as api:
        worker = Worker(env, "collect.flaky", tmp_path / "worker.log", concurrency=4)
        try:
            api.wait_ready()
            pids = (api.proc.pid, worker.proc.pid)
            started = time.monotonic()
            with JobStream(api, JOB, count=60, spacing=0.2) as stream:
                stream.wait_accepted(10)  # the old user in use (the API publishes with it)
                assert "cq_a" in _users(rabbit)
                _add_user(rabbit, vhost, "cq_b", "pw-b")
                rewrite(url_file, url.format("cq_b:pw-b"))
                wait_for(lambda: "cq_a" not in _users(rabbit), timeout=30, interval=0.5)
                switched = time.monotonic() - started
                assert rabbit.ctl("delete_user", "cq_a").returncode == 0
                assert rabbit.ctl("authenticate_user", "cq_a", "pw-a").returncode != 0
            ended = {job_id: api.wait(job_id, timeout=30)["status"] for job_id in stream.accepted}

            assert_still_running(api, worker, pids)
            assert _users(rabbit) == {"cq_b"}
        finally:
            worker.stop()
        logs = api.log.read_text() + worker.log_path.read_text()
    t = tally(redis_server.url, stream.accepted)
    fault_report(t.row("broker password rollover during 60 jobs", switched))
    assert_rolled_over(stream, ended, logs, "COLLECTQ_BROKER_URL_FILE", ("pw-a", "pw-b"))
    assert (t.lost, t.duplicated) == (0, 0)
