"""deploy/backup: back up and restore the test's own Redis and RabbitMQ node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Queue

from tests.conftest import ROOT, free_port
from tests.faults.services import RABBIT_BIN

pytestmark = pytest.mark.faults
BACKUP = ROOT / "deploy" / "backup"


def _run(script: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(BACKUP / script), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_redis_backup_restore_and_retention(redis_server, tmp_path) -> None:
    import os

    client = redis.Redis.from_url(redis_server.url)
    client.set("cq:job:kept", "before backup")
    client.hset("cq:art:blob", mapping={"body": bytes(range(256))})
    env = {**os.environ, "REDIS_URL": redis_server.url, "BACKUP_DIR": str(tmp_path / "b")}
    env["KEEP"] = "2"
    (tmp_path / "b").mkdir()
    for day in ("01", "02", "03"):  # older backups
        (tmp_path / "b" / f"redis-202001{day}T000000Z.rdb").write_bytes(b"REDIS0009")
    latest = _run("redis-backup.sh", env=env).splitlines()[0]
    backups = sorted(p.name for p in (tmp_path / "b").glob("redis-*.rdb"))
    assert backups == ["redis-20200103T000000Z.rdb", Path(latest).name]  # KEEP=2

    client.set("cq:job:kept", "changed after backup")
    client.set("cq:job:new", "written after backup")
    redis_server.stop()
    out = _run(
        "redis-restore.sh",
        latest,
        str(redis_server.root),
        env={**env, "RESTORE_PORT": str(free_port())},
    )
    assert "restored 2 keys" in out
    redis_server.start()  # with AOF on, as before: it must load the rebuilt AOF
    client = redis.Redis.from_url(redis_server.url)
    assert client.get("cq:job:kept") == b"before backup"
    assert client.get("cq:job:new") is None
    assert client.hget("cq:art:blob", "body") == bytes(range(256))
    assert client.config_get("appendonly")["appendonly"] == "yes"


def test_rabbitmq_definitions_backup_and_restore(rabbit, tmp_path) -> None:
    vhost = "backup-test"
    rabbit.add_vhost(vhost)
    with Connection(rabbit.url(vhost)) as conn:
        Queue("kept", Exchange("collectq", type="direct", durable=True), "kept", durable=True)(
            conn.default_channel
        ).declare()
    ctl = f"{RABBIT_BIN / 'rabbitmqctl'} -n {rabbit.name}"
    env = {**rabbit.env, "BACKUP_DIR": str(tmp_path / "b"), "RABBITMQCTL": ctl}
    path = _run("rabbitmq-backup.sh", env=env).splitlines()[0]
    defs = json.loads(Path(path).read_text())
    assert any(q["name"] == "kept" and q["vhost"] == vhost for q in defs["queues"])

    assert rabbit.ctl("delete_vhost", vhost).returncode == 0
    _run("rabbitmq-restore.sh", path, env=env)
    try:
        with Connection(rabbit.url(vhost)) as conn:
            conn.default_channel.queue_declare(queue="kept", passive=True)  # type: ignore[attr-defined]  # exists again
    finally:
        rabbit.ctl("delete_vhost", vhost)
