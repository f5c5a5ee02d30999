"""The registry: every kind of record collectq keeps in Redis, and its upgrade steps.

A kind names where its records live (a key pattern from `app.rediskeys`), their shape
and the steps from each old version to the next. Adding a version: raise the kind's
number in `app.migrations.versions`, write the step here (what a record of the old
version becomes), and make the readers accept the old version until `collectq migrate`
has run everywhere.

Every key name of `app.rediskeys.RedisKeys` is either a kind's (`Kind.key`) or in
`NOT_RECORDS`, with the reason (docs/decisions.md "Deployment: stored schema versions
and migrations (issue 14)"); tests/integration/test_migrate.py checks that a new key
name lands in one of the two.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.auth.keyaudit import EVENT_FIELD
from app.changes import CHANGE_FIELD
from app.migrations import versions
from app.rediskeys import RedisKeys
from app.webhooks.deliveries import CLAIM_PREFIX

__all__ = ["KINDS", "NOT_RECORDS", "Kind", "Shape", "Step", "kind_named"]

Record = dict[str, Any]


class Shape(StrEnum):
    """How records sit in a key."""

    HASH = "hash"  # the key is one record; the version is one of its fields
    HASH_OF_JSON = "hash of JSON"  # each field's value is a JSON record
    ZSET_OF_JSON = "zset of JSON"  # each member is a JSON record (its score kept)
    STREAM_OF_JSON = "stream of JSON"  # one field of each entry is a JSON record
    STRING_JSON = "JSON string"  # the value is a JSON record ("": none)


def _same(record: Record) -> Record:
    return record


@dataclass(frozen=True)
class Step:
    """What a record of one version becomes at the next.

    `defaults`: fields a hash record gains where it lacks them (never overwritten);
    `upgrade`: the new content of a JSON record (the runner stamps the new version).
    """

    defaults: Mapping[str, str] = field(default_factory=dict)
    upgrade: Callable[[Record], Record] = _same


def _compact(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"))


def _compact_sorted(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Kind:
    """One kind of record. `steps[v]` takes a record from version v to v + 1."""

    name: str
    shape: Shape
    key: str  # the RedisKeys member that names its keys
    current: int
    steps: Mapping[int, Step]
    marker: str = ""  # HASH: a field every complete record has (absent: no record)
    skip_prefix: str = ""  # HASH_OF_JSON: fields with this prefix are not records
    entry_field: str = ""  # STREAM_OF_JSON: the entry field that holds the record
    encode: Callable[[Record], str] = _compact  # JSON shapes: as the writer writes them

    def __post_init__(self) -> None:
        missing = set(range(versions.UNVERSIONED, self.current)) - set(self.steps)
        if missing:
            raise ValueError(f"{self.name}: no step from version(s) {sorted(missing)}")

    def pattern(self, keys: RedisKeys) -> str:
        """Its key names with `*` for every variable part."""
        name = getattr(keys, self.key)
        if not callable(name):  # a prefix
            return f"{name}*"
        return str(name(*["*"] * len(inspect.signature(name).parameters)))

    @property
    def redis_type(self) -> str:
        return {
            Shape.HASH: "hash",
            Shape.HASH_OF_JSON: "hash",
            Shape.ZSET_OF_JSON: "zset",
            Shape.STREAM_OF_JSON: "stream",
            Shape.STRING_JSON: "string",
        }[self.shape]

    def upgraded(self, record: Record) -> Record:
        """A JSON record at its current version (steps from its own version on)."""
        for version in range(versions.version_of(record), self.current):
            record = self.steps[version].upgrade(record)
        return versions.stamped(record, self.current)


# Version 1 → 2 of every kind: the version is written. API keys made before the key
# policies (CIDRs, rate limits) and rotation existed also gain those fields, as the
# reader already defaults them.
_STAMP = {versions.UNVERSIONED: Step()}
_KEY_FIELDS = {"cidrs": "[]", "rate_limits": "{}", "rotated_to": "", "rotated_from": ""}

KINDS: tuple[Kind, ...] = (
    Kind("job", Shape.HASH, "job", versions.JOB, _STAMP, marker="id"),
    Kind(
        "artifact",
        Shape.HASH,
        "artifact",
        versions.ARTIFACT,
        _STAMP,
        marker="body",
    ),
    Kind(
        "api_key",
        Shape.HASH,
        "api_key",
        versions.API_KEY,
        {versions.UNVERSIONED: Step(defaults=_KEY_FIELDS)},
        marker="hash",
    ),
    Kind(
        "schedule",
        Shape.HASH,
        "schedule",
        versions.SCHEDULE,
        _STAMP,
        marker="definition",
    ),
    Kind(
        "schedule_run",
        Shape.ZSET_OF_JSON,
        "schedule_runs",
        versions.SCHEDULE_RUN,
        _STAMP,
    ),
    Kind(
        "webhook_secret",
        Shape.HASH,
        "webhook_secret",
        versions.WEBHOOK_SECRET,
        _STAMP,
        marker="current",
    ),
    Kind(
        "webhook_endpoint",
        Shape.HASH,
        "webhook_endpoint",
        versions.WEBHOOK_ENDPOINT,
        _STAMP,
        marker="url",
    ),
    Kind(
        "key_event",
        Shape.STREAM_OF_JSON,
        "api_key_events",
        versions.KEY_EVENT,
        _STAMP,
        entry_field=EVENT_FIELD,
        encode=_compact_sorted,
    ),
    Kind(
        "delivery",
        Shape.HASH_OF_JSON,
        "deliveries",
        versions.DELIVERY,
        _STAMP,
        skip_prefix=CLAIM_PREFIX,
        encode=json.dumps,
    ),
    Kind(
        "fingerprint",
        Shape.HASH_OF_JSON,
        "change_fingerprints",
        versions.FINGERPRINT,
        _STAMP,
        encode=_compact_sorted,
    ),
    Kind(
        "change",
        Shape.STREAM_OF_JSON,
        "changes",
        versions.CHANGE,
        _STAMP,
        entry_field=CHANGE_FIELD,
        encode=_compact_sorted,
    ),
    Kind(
        "change_done",
        Shape.STRING_JSON,
        "change_done",
        versions.CHANGE,
        _STAMP,
        encode=_compact_sorted,
    ),
)


# RedisKeys members that name no versioned record, and why.
NOT_RECORDS: Mapping[str, str] = {
    **dict.fromkeys(
        ["index", "all_jobs", "legacy_all_jobs", "schedule_index", "all_schedules", "api_keys"],
        "an index of ids",
    ),
    **dict.fromkeys(
        ["idempotency", "reuse", "watch", "queued_prefix", "queued", "finished"],
        "ids of jobs (a string or a collection of ids), no record",
    ),
    **dict.fromkeys(
        ["paused_schedules", "schedule_running", "schedule_tick", "schedule_queued"],
        "ids or a tick's time, no record",
    ),
    **dict.fromkeys(
        ["artifact_prefix", "artifact_member", "artifact_ledger", "artifact_sizes"],
        "the artifact's name, or the owner's byte accounting (counters)",
    ),
    **dict.fromkeys(
        ["reaper_lock", "beat_lock", "beat_last_tick", "workers_online", "wait_slots"],
        "a lock, a time or held slots",
    ),
    "host_slots": "held slots",
    "api_key_networks": "the networks a key was used from (strings)",
    "key_check_lock": "a lock",
    "reaper_last_pass": "overwritten whole by every reaper pass",
    **dict.fromkeys(
        ["events", "owner_events_prefix", "owner_events", "all_events"],
        "short-lived live events: their format is the SSE wire format (app.jobs.events)",
    ),
    "redbeat_prefix": "celery-redbeat's entries: its format, its upgrades",
    **dict.fromkeys(["breaker_namespace", "breaker_hosts"], "pybreaker's state, and origins"),
    "rate_limits": "flask-limiter's counters",
}


def kind_named(name: str) -> Kind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)
