"""The Redis password rolled over under a running API and worker, losing no job.

A redis-server of the test's own (loopback, spare port, ACL users; the shared one is never
touched) is the job store, given to both processes as ``COLLECTQ_REDIS_URL_FILE``. The
procedure of docs/operations.md, "Rotating secrets": a second ACL user next to the old one,
the URL file switched to it, wait until no connection of the old user is left (the processes
reloaded: gunicorn's graceful reload, the worker's warm restart in place), delete the old
user. Jobs are submitted all the while; every one is accepted and ends `succeeded`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.apiprocess import running_api
from tests.conftest import Worker, free_port, wait_for
from tests.faults.services import RedisServer
from tests.rollover import JobStream, assert_rolled_over, assert_still_running, rewrite

pytestmark = pytest.mark.integration

JOB = {"target": "example.org", "collectors": ["flaky"], "options": {"flaky": {"sleep": 0.3}}}


def _users(admin: redis.Redis) -> set[str]:
    """The users of the API's and the worker's connections (the test's own are `admin`)."""
    return {c["user"] for c in admin.client_list()} - {"admin"}


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, redis.Redis]]:
    """A redis-server of this test with an `admin` user and the default user off."""
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    setup = redis.Redis(port=server.port)
    setup.acl_setuser("admin", enabled=True, passwords=["+admin-pw"], keys=["*"],
                      channels=["*"], commands=["+@all"])  # fmt: skip
    setup.close()
    admin = redis.Redis(port=server.port, username="admin", password="admin-pw")
    admin.acl_setuser("default", enabled=False)
    yield server, admin
    admin.close()
    server.stop()


def test_redis_password_rolls_over_under_api_and_worker_with_no_job_lost(
    acl_redis: tuple[RedisServer, redis.Redis],
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    server, admin = acl_redis
    url = f"redis://{{}}@127.0.0.1:{server.port}/0"
    admin.execute_command("ACL", "SETUSER", "cq_a", "on", ">pw-a", "~*", "&*", "+@all")
    url_file = tmp_path / "redis_url"
    url_file.write_text(url.format("cq_a:pw-a"))
    env = {k: v for k, v in service_env.items() if k != "COLLECTQ_REDIS_URL"}
    env |= {"COLLECTQ_REDIS_URL_FILE": str(url_file), "COLLECTQ_SECRET_WATCH_INTERVAL": "0.2"}

    with running_api(env, tmp_path, store_url=url.format("admin:admin-pw")) as api:
        worker = Worker(env, "collect.flaky", tmp_path / "worker.log", concurrency=4)
        try:
            api.wait_ready()
            pids = (api.proc.pid, worker.proc.pid)
            assert _users(admin) == {"cq_a"}
            started = time.monotonic()
            with JobStream(api, JOB, count=60, spacing=0.2) as stream:  # 12 s of submissions
                stream.wait_accepted(10)  # the old user in use
                admin.execute_command("ACL", "SETUSER", "cq_b", "on", ">pw-b", "~*", "&*", "+@all")
                rewrite(url_file, url.format("cq_b:pw-b"))
                wait_for(lambda: "cq_a" not in _users(admin), timeout=25, interval=0.1)
                switched = time.monotonic() - started
                admin.execute_command("ACL", "DELUSER", "cq_a")
                with pytest.raises(redis.AuthenticationError):
                    redis.Redis.from_url(url.format("cq_a:pw-a")).ping()
            ended = {job_id: api.wait(job_id, timeout=30)["status"] for job_id in stream.accepted}

            assert_still_running(api, worker, pids)
            assert _users(admin) == {"cq_b"}
        finally:
            worker.stop()
        worker_log = worker.log_path.read_text()
        api_log = api.log.read_text()
    print(f"old user gone after {switched:.1f}s; {len(stream.accepted)} accepted")
    assert_rolled_over(
        stream, ended, api_log + worker_log, "COLLECTQ_REDIS_URL_FILE", ("pw-a", "pw-b")
    )
    assert worker_log.count(" ready.") == 2  # one warm restart, in place
