"""Stored schema versions and `collectq migrate` against the real Redis.

The old records are written here as collectq wrote them before records carried
`schema_version` (the writers of commit 087eb88: the same fields, no version), one of
every kind in `app.migrations.kinds`, under the test's own key prefix. They are read
back through the stores the API and the workers use.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from click.testing import CliRunner

from app.auth.apikeys import KeyStore, format_token
from app.changes import ChangeLog
from app.cli.main import main
from app.jobs.ids import new_id
from app.jobs.store import JobStore
from app.migrations import versions
from app.migrations.kinds import KINDS, NOT_RECORDS
from app.migrations.records import HashJsonRecords, HashRecords
from app.migrations.runner import migrate
from app.rediskeys import RedisKeys
from app.schedules.store import ScheduleStore
from app.webhooks.deliveries import DeliveryState, DeliveryStore
from app.webhooks.endpoint import EndpointStore
from app.webhooks.secrets import SecretStore
from collectors.fingerprint import Fingerprint
from schemas import SCHEMA_VERSION
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration

TTL = 3600
BORN_VERSIONED = ("webhook_endpoint", "key_event")
NOW = "2026-11-01T10:00:00.000Z"


def _glob(prefix: str) -> str:
    return prefix.replace("*", "\\*")


def _compact(value: Any, *, sort: bool = False) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=sort)


@pytest.fixture
def r() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def keys(r: redis.Redis) -> Iterator[RedisKeys]:
    # a glob character in the prefix: the runner must take it literally
    prefix = f"tm*{uuid.uuid4().hex[:8]}:"
    yield RedisKeys(prefix)
    found = list(r.scan_iter(f"{_glob(prefix)}*", count=1000))
    if found:
        r.delete(*found)


class Old:
    """One record of every kind, as the writers before stored versions wrote them."""

    def __init__(self, r: redis.Redis, keys: RedisKeys) -> None:
        self.job, self.later = new_id("j_"), new_id("j_")
        self.schedule, self.key_prefix, self.old_prefix = "s_old", "abcdefgh1234", "zzzzzzzz0000"
        self.token = format_token(self.key_prefix, "S" * 32)
        self.old_token = format_token(self.old_prefix, "T" * 32)
        self.did = f"{self.job}.completed"
        self.change = {
            "id": "ch_1",
            "schedule_id": self.schedule,
            "job_id": self.job,
            "previous_job_id": "j_0",
            "at": NOW,
            "diff": [{"collector": "http", "part": "status", "before": "200", "after": "500"}],
        }
        self.delivery = {
            "id": self.did,
            "event": "completed",
            "url": "http://127.0.0.1:9/hook",
            "state": "delivered",
            "created_at": NOW,
            "updated_at": NOW,
            "attempts": [
                {"attempt": 1, "at": NOW, "status_code": 200, "duration_ms": 3.5, "response": "ok"}
            ],
        }
        self._write(r, keys)

    def _write(self, r: redis.Redis, k: RedisKeys) -> None:
        result = {
            "status": "succeeded",
            "attempts": 1,
            "data": {"status_code": 200},
            "artifacts": [{"name": "http.body", "content_type": "text/html", "size": 5}],
            "error": None,
        }
        pipe = r.pipeline()
        pipe.hset(
            k.job(self.job),
            mapping={
                "id": self.job,
                "owner": "alice",
                "target": "https://example.org",
                "collectors": '["http"]',
                "options": "{}",
                "labels": '{"env": "prod"}',
                "created_at": NOW,
                "status": "succeeded",
                "schedule_id": self.schedule,
                "started_at": NOW,
                "finished_at": NOW,
                "s:http": "succeeded",
                "a:http": "1",
                "r:http": json.dumps(result),
                "t:http": "1",
            },
        )
        pipe.expire(k.job(self.job), TTL)
        pipe.hset(
            k.artifact(self.job, "http.body"),
            mapping={"body": b"hello", "content_type": "text/html"},
        )
        pipe.expire(k.artifact(self.job, "http.body"), TTL)
        key_fields: dict[Any, str] = {  # Any: redis-py types keys invariantly
            "prefix": self.key_prefix,
            "hash": hashlib.sha256(self.token.encode()).hexdigest(),
            "owner": "alice",
            "name": "ci",
            "scopes": '["jobs:read", "jobs:write"]',
            "created_at": repr(time.time() - 60),
            "expires_at": "",
            "last_used_at": "",
            "revoked_at": "",
            "cidrs": '["127.0.0.0/8"]',
            "rate_limits": '{"read": "10/second"}',
            "rotated_to": "",
            "rotated_from": "",
        }
        pipe.hset(k.api_key(self.key_prefix), mapping=key_fields)
        # a key from before key policies and rotation: no cidrs, rate_limits, rotated_*
        oldest: dict[Any, str] = {
            f: v for f, v in key_fields.items() if f in {"owner", "name", "scopes"}
        }
        oldest |= {"prefix": self.old_prefix, "created_at": repr(time.time() - 120)}
        oldest["hash"] = hashlib.sha256(self.old_token.encode()).hexdigest()
        pipe.hset(k.api_key(self.old_prefix), mapping=oldest)
        pipe.zadd(k.api_keys, {self.key_prefix: 1, self.old_prefix: 0})
        definition = {
            "name": "nightly",
            "job": {"target": "https://example.org", "collectors": ["http"]},
            "trigger": {"cron": "0 3 * * *"},
            "timezone": "UTC",
        }
        pipe.hset(
            k.schedule(self.schedule),
            mapping={
                "owner": "alice",
                "paused": "0",
                "definition": _compact(definition),
                "created_at": "1764583200.0",
                "updated_at": "1764583200.0",
            },
        )
        run = {"job_id": self.job, "due_at": 1764583200.0, "fired_at": 1764583201.5}
        pipe.zadd(k.schedule_runs(self.schedule), {_compact({**run, "trigger": "cron"}): 1})
        pipe.hset(k.webhook_secret("alice"), mapping={"current": "whsec_old", "created_at": NOW})
        pipe.hset(k.deliveries(self.job), self.did, json.dumps(self.delivery))
        pipe.hset(k.deliveries(self.job), f"claim:{self.did}:1", "1764583201.0")
        pipe.expire(k.deliveries(self.job), TTL)
        fingerprint = Fingerprint("http/status", {"status": 200})
        stored_fp = {"job_id": self.job, "at": NOW, **fingerprint.to_dict()}
        pipe.hset(k.change_fingerprints(self.schedule), "http", _compact(stored_fp, sort=True))
        pipe.xadd(k.changes(self.schedule), {"c": _compact(self.change, sort=True)})
        pipe.expire(k.changes(self.schedule), TTL)
        pipe.set(k.change_done(self.job), _compact(self.change, sort=True), ex=TTL)
        pipe.execute()


def _key(store: KeyStore, token: str, client_ip: str) -> dict[str, Any]:
    """The key a token belongs to, as the API checks it (without the use it records)."""
    public = store.verify(token, client_ip).public(now=0)
    public.pop("last_used_at")
    return public


def read_back(r: redis.Redis, k: RedisKeys, old: Old) -> dict[str, Any]:
    """Every record through the reader the service uses."""
    jobs = JobStore(r, k.prefix, ttl=TTL)
    keystore = KeyStore(r, k.prefix)
    schedules = ScheduleStore(r, k)
    changes = ChangeLog(r, k, max_count=100, max_age=TTL, done_ttl=TTL)
    done, new = changes.record(old.schedule, old.job, {}, lambda *_: [])
    return {
        "envelope": jobs.get(old.job),
        "artifact": jobs.artifacts.get(old.job, "http.body"),
        "key": _key(keystore, old.token, "127.0.0.1"),
        "oldest_key": _key(keystore, old.old_token, "10.1.2.3"),
        "schedule": schedules.get(old.schedule),
        "runs": schedules.runs(old.schedule, limit=10, cursor=None)[0],
        "secret": SecretStore(r, k).get("alice").as_dict(now=0),
        "deliveries": DeliveryStore(r, k, TTL).list(old.job),
        "changes": changes.list(old.schedule, limit=10, now=time.time())[0],
        "change_done": (done.to_dict() if done else None, new),
    }


def _raw(r: redis.Redis, k: RedisKeys) -> dict[bytes, Any]:
    """Every key of the prefix, its content and whether it has a TTL."""
    out: dict[bytes, Any] = {}
    for key in sorted(r.scan_iter(f"{_glob(k.prefix)}*", count=1000)):
        kind = cast(bytes, r.type(key))
        content = {
            b"hash": lambda key: r.hgetall(key),
            b"zset": lambda key: r.zrange(key, 0, -1, withscores=True),
            b"stream": lambda key: r.xrange(key),
            b"string": lambda key: r.get(key),
            b"set": lambda key: sorted(r.smembers(key)),  # networks a key was used from
        }[kind](key)
        out[key] = (kind, content, r.ttl(key) > 0)
    return out


def _cli(keys: RedisKeys, *args: str) -> tuple[str, dict[str, Any]]:
    env = {"COLLECTQ_ENV": "test", "COLLECTQ_REDIS_URL": REDIS_URL}
    env["COLLECTQ_REDIS_PREFIX"] = keys.prefix
    table = CliRunner().invoke(main, ["migrate", *args], env=env)
    counts = CliRunner().invoke(main, ["migrate", "--json", *args], env=env)
    assert table.exit_code == 0, table.output
    assert counts.exit_code == 0, counts.output
    return table.output, json.loads(counts.output)["kinds"]


def test_readers_accept_records_written_before_versions(r: redis.Redis, keys: RedisKeys) -> None:
    old = Old(r, keys)
    got = read_back(r, keys, old)
    env = got["envelope"]
    assert env["schema_version"] == SCHEMA_VERSION  # the API's format, whatever is stored
    assert (env["status"], env["labels"], env["schedule_id"]) == (
        "succeeded",
        {"env": "prod"},
        "s_old",
    )
    assert env["results"]["http"]["data"] == {"status_code": 200}
    assert got["artifact"] == (b"hello", "text/html")
    assert (got["key"]["cidrs"], got["key"]["state"]) == (["127.0.0.0/8"], "active")
    assert (got["oldest_key"]["cidrs"], got["oldest_key"]["rate_limits"]) == ([], {})
    assert (got["schedule"]["name"], got["schedule"]["paused"]) == ("nightly", False)
    assert got["runs"] == [
        {"job_id": old.job, "due_at": 1764583200.0, "fired_at": 1764583201.5, "trigger": "cron"}
    ]
    assert got["secret"]["secret"] == "whsec_old"
    assert got["deliveries"] == [old.delivery]
    assert got["changes"] == [old.change]
    assert got["change_done"] == (old.change, False)  # recorded before: the same answer


def test_migrate_dry_run_then_upgrade_then_nothing_to_do(r: redis.Redis, keys: RedisKeys) -> None:
    old = Old(r, keys)
    # another deployment's job, which `tm*…:` unescaped would match
    decoy = keys.prefix.replace("*", "X") + "job:j_decoy"
    r.hset(decoy, mapping={"id": "j_decoy", "status": "queued"})
    r.expire(decoy, 60)
    before = read_back(r, keys, old)
    raw = _raw(r, keys)

    table, counts = _cli(keys, "--dry-run")
    assert _raw(r, keys) == raw, "a dry run wrote"
    # kinds born with a version (issue 16) have no old records; reading the keys back
    # above recorded their first networks in their audit trails, at the current version
    expected = {k.name: 1 for k in KINDS} | {"api_key": 2} | dict.fromkeys(BORN_VERSIONED, 0)
    assert {name: c["upgraded"] for name, c in counts.items()} == expected
    assert "dry run: 11 records would be upgraded; nothing was written" in table

    table, counts = _cli(keys)
    assert {name: c["upgraded"] for name, c in counts.items()} == {k.name: 0 for k in KINDS}
    current = {name: c["current"] for name, c in counts.items()}
    assert current == expected | {"key_event": 2}  # one network of each of the two keys
    # (the table run upgraded; the --json run after it found everything current)
    assert "11 records upgraded" in table

    upgraded = _raw(r, keys)
    assert {key: has_ttl for key, (_, _, has_ttl) in upgraded.items()} == {
        key: has_ttl for key, (_, _, has_ttl) in raw.items()
    }, "a TTL was lost or gained"

    def stored(key: str) -> Any:
        return upgraded[key.encode()][1]

    for key in (
        keys.job(old.job),
        keys.artifact(old.job, "http.body"),
        keys.api_key(old.key_prefix),
        keys.api_key(old.old_prefix),
        keys.schedule(old.schedule),
        keys.webhook_secret("alice"),
    ):
        assert stored(key)[b"schema_version"] == b"2", key
    for record in (
        stored(keys.schedule_runs(old.schedule))[0][0],
        stored(keys.deliveries(old.job))[old.did.encode()],
        stored(keys.change_fingerprints(old.schedule))[b"http"],
        stored(keys.change_done(old.job)),
    ):
        assert json.loads(record)["schema_version"] == 2, record
    oldest = stored(keys.api_key(old.old_prefix))
    assert (oldest[b"cidrs"], oldest[b"rate_limits"], oldest[b"rotated_to"]) == (b"[]", b"{}", b"")
    claim = stored(keys.deliveries(old.job))[f"claim:{old.did}:1".encode()]
    assert claim == b"1764583201.0"  # not a record: left as it was
    ((entry_id, fields),) = stored(keys.changes(old.schedule))
    assert entry_id == raw[keys.changes(old.schedule).encode()][1][0][0]  # the same id
    assert json.loads(fields[b"c"])["schema_version"] == versions.CHANGE
    stream = r.xinfo_stream(keys.changes(old.schedule))
    assert stream["last-generated-id"] == entry_id

    assert read_back(r, keys, old) == before
    raw = _raw(r, keys)
    table, counts = _cli(keys)
    assert "nothing to do" in table
    assert r.hgetall(decoy) == {b"id": b"j_decoy", b"status": b"queued"}
    r.delete(decoy)  # (a failed run leaves it for its 60 s)
    assert all(c["upgraded"] == 0 for c in counts.values())
    assert _raw(r, keys) == raw


def test_new_writers_store_every_kind_at_its_current_version(
    r: redis.Redis, keys: RedisKeys
) -> None:
    jobs = JobStore(r, keys.prefix, ttl=TTL)
    job = jobs.create(owner="bob", target="a.org", collectors=["http"], options={}, labels={})
    jobs.artifacts.put(job["id"], "http.body", "text/plain", b"x")
    KeyStore(r, keys.prefix).create(owner="bob", name="n", scopes=["jobs:read"])
    schedules = ScheduleStore(r, keys)
    schedules.create("s_new", "bob", {"name": "n"})
    schedules.add_run("s_new", {"job_id": job["id"], "due_at": None, "fired_at": time.time()})
    SecretStore(r, keys).get("bob")
    EndpointStore(r, keys).put("bob", "https://hooks.example.org/collectq")
    deliveries = DeliveryStore(r, keys, TTL)
    did = deliveries.create(job["id"], "completed", "http://127.0.0.1:9/")[0]["id"]
    deliveries.add_attempt(job["id"], did, {"attempt": 1}, DeliveryState.RETRYING)
    changes = ChangeLog(r, keys, max_count=10, max_age=TTL, done_ttl=TTL)
    first, later = new_id("j_"), new_id("j_")
    changes.record("s_new", first, {"http": Fingerprint("k", {"a": 1})}, lambda *_: ["a"])
    change, _ = changes.record(
        "s_new", later, {"http": Fingerprint("k", {"a": 2})}, lambda *_: ["a"]
    )
    assert change is not None

    counts = migrate(r, keys, dry_run=True)
    assert {n: c.upgraded for n, c in counts.items()} == {k.name: 0 for k in KINDS}
    found = {n: c.current for n, c in counts.items()}
    assert found == {k.name: 1 for k in KINDS}  # the baseline's change_done "" is no record


def test_a_record_changed_during_the_run_keeps_its_change(
    r: redis.Redis, keys: RedisKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the runner's read and its write the service appends a delivery attempt
    (as an old replica writes it) and a job expires: the attempt survives, upgraded, and
    the expired job is not brought back."""
    old = Old(r, keys)
    gone = new_id("j_")
    r.hset(keys.job(gone), mapping={"id": gone, "status": "queued"})
    meanwhile = {**old.delivery, "attempts": [*old.delivery["attempts"], {"attempt": 2}]}
    parse_json, parse_hash = HashJsonRecords.parse, HashRecords.parse

    def deliveries_then_write(self: HashJsonRecords, key: bytes, reply: Any) -> list[Any]:
        out = parse_json(self, key, reply)
        if self.kind.name == "delivery" and r.hget(key, old.did) != json.dumps(meanwhile).encode():
            r.hset(key, old.did, json.dumps(meanwhile))  # only the first read sees the old one
        return out

    def jobs_then_expire(self: HashRecords, key: bytes, reply: Any) -> list[Any]:
        out = parse_hash(self, key, reply)
        if key == keys.job(gone).encode():
            r.delete(key)
        return out

    monkeypatch.setattr(HashJsonRecords, "parse", deliveries_then_write)
    monkeypatch.setattr(HashRecords, "parse", jobs_then_expire)
    counts = migrate(r, keys, kinds=[k for k in KINDS if k.name in ("job", "delivery")])

    assert (counts["delivery"].upgraded, counts["job"].upgraded) == (1, 1)
    stored = json.loads(r.hget(keys.deliveries(old.job), old.did) or b"")
    assert stored == versions.stamped(meanwhile, versions.DELIVERY)
    assert not r.exists(keys.job(gone))


def test_every_key_name_is_a_versioned_kind_or_said_not_to_be_a_record() -> None:
    names = {
        n
        for n, v in vars(RedisKeys).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, (property, staticmethod)))
    }
    kinds = {k.key for k in KINDS}
    assert not kinds & set(NOT_RECORDS)
    assert kinds | set(NOT_RECORDS) == names, "a new key: a kind of record, or why not"
    patterns = [k.pattern(RedisKeys("p:")) for k in KINDS]
    assert len(set(patterns)) == len(patterns)
