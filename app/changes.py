"""Change detection: each run of a schedule compared with the previous one (README
"Change detection", docs/decisions.md "Scheduling: change detection (issue 13)").

The finalizer (`app.webhooks.finalize`, ``jobs.finished``) calls `record_run` once a job
of a schedule is final. For every collector that *succeeded*, the collector's
fingerprint of its data (`Collector.fingerprint`, `collectors.fingerprint`) is compared
with the last good fingerprint of that collector in this schedule; the parts that differ
become one change record with a compact diff. Rules:

- a collector that failed (or was cancelled, expired, skipped) is not compared and its
  last good fingerprint stays: a failure is not new content (the `failure` webhook
  event reports it), and the run after it compares with the last content seen;
- the first fingerprint of a collector (or one of another kind: the schedule switched
  e.g. to perceptual screenshots) is a baseline, not a change;
- a run older than the one a fingerprint came from (runs finishing out of order) changes
  nothing: job ids sort by creation time;
- idempotent per job: the first call stores what it found under the job
  (``p chgdone:{job}``), a repeated call returns that and stores nothing.

Layout (under the prefix ``p``; names in `app.rediskeys`)::

    p chfp:{schedule}   hash    collector → {job_id, at, kind, parts, digest, schema_version}
    p chg:{schedule}    stream  one entry per change, field ``c`` = the change's JSON;
                                at most CHANGE_HISTORY_MAX entries, none older than
                                CHANGE_HISTORY_MAX_AGE (trimmed at each change, skipped
                                when read); the key expires that long after the last one
    p chgdone:{job}     string  the change the job recorded ("" for none); JOB_TTL

Each stored JSON carries ``schema_version`` (`app.migrations.versions`); the change
webhook and the API get the change without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from redis import Redis, WatchError

from app.errors import NotFound
from app.jobs.context import JobContext
from app.jobs.envelope import utcnow
from app.jobs.ids import new_id
from app.metrics import SCHEDULE_CHANGES
from app.migrations import versions
from app.rediskeys import RedisKeys
from app.schedules.service import load_schedule
from app.streampage import newest_first, stream_floor
from collectors import fingerprint as fp
from collectors.base import Collector

__all__ = [
    "CHANGE_FIELD",
    "Change",
    "ChangeLog",
    "change_log",
    "fingerprints_of",
    "forget",
    "record_run",
]

log = logging.getLogger("collectq.changes")

_MAX_TRIES = 20  # optimistic transactions of one schedule's runs finishing together
CHANGE_FIELD = "c"  # the field of a change-history stream entry that holds the change
SUCCEEDED = "succeeded"

Compare = Callable[[str, fp.Fingerprint, fp.Fingerprint], list[str]]


@dataclass(frozen=True)
class Change:
    """One detected change of a schedule's results (the body of `schedule.changed`)."""

    id: str
    schedule_id: str
    job_id: str
    previous_job_id: str | None
    at: str
    diff: list[dict[str, Any]] = field(default_factory=list)

    @property
    def collectors(self) -> list[str]:
        return sorted({d["collector"] for d in self.diff})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Change:
        return cls(
            id=value["id"],
            schedule_id=value["schedule_id"],
            job_id=value["job_id"],
            previous_job_id=value.get("previous_job_id"),
            at=value["at"],
            diff=list(value.get("diff") or []),
        )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _stale(job_id: str, recorded: str) -> bool:
    """`job_id` was created before the job whose fingerprint is recorded (or is it).

    Job ids are ULIDs: their first 10 characters after the prefix are the creation
    millisecond; within one millisecond the order is unknown, so finishing order counts.
    """
    return job_id == recorded or recorded[-26:-16] > job_id[-26:-16]


class ChangeLog:
    """The fingerprints and the bounded change history of schedules, in Redis."""

    def __init__(
        self, redis: Redis, keys: RedisKeys, *, max_count: int, max_age: int, done_ttl: int
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_count = max_count
        self.max_age = max_age
        self.done_ttl = done_ttl

    def record(
        self,
        schedule_id: str,
        job_id: str,
        fingerprints: Mapping[str, fp.Fingerprint],
        compare: Compare,
    ) -> tuple[Change | None, bool]:
        """Compare and store a run's fingerprints: (its change or None, whether new).

        Optimistic (WATCH): two runs of one schedule finishing together are compared one
        after the other, never both with the same old fingerprints.
        """
        fp_key, done_key = self.keys.change_fingerprints(schedule_id), self.keys.change_done(job_id)
        for _ in range(_MAX_TRIES):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(fp_key, done_key)  # type: ignore[no-untyped-call]
                    done = cast(bytes | None, pipe.get(done_key))
                    if done is not None:  # this job was recorded before: the same answer
                        return (Change.from_dict(json.loads(done)) if done else None), False
                    stored = cast(dict[bytes, bytes], pipe.hgetall(fp_key))
                    change, updates = self._compare(
                        schedule_id, job_id, fingerprints, stored, compare
                    )
                    pipe.multi()
                    self._write(pipe, schedule_id, done_key, change, updates)
                    pipe.execute()
                except WatchError:
                    continue
            if change is not None:
                self._trim(schedule_id)
            return change, True
        raise RuntimeError(f"schedule {schedule_id}: too many concurrent runs to record {job_id}")

    def _compare(
        self,
        schedule_id: str,
        job_id: str,
        fingerprints: Mapping[str, fp.Fingerprint],
        stored: Mapping[bytes, bytes],
        compare: Compare,
    ) -> tuple[Change | None, dict[str, str]]:
        diff: list[dict[str, Any]] = []
        previous: list[str] = []
        updates: dict[str, str] = {}
        at = utcnow()
        for collector, new in sorted(fingerprints.items()):
            raw = stored.get(collector.encode())
            old = json.loads(raw) if raw else None
            if old is not None and _stale(job_id, old["job_id"]):
                continue  # a later run already recorded this collector
            stored_fp = {"job_id": job_id, "at": at, **new.to_dict()}
            updates[collector] = _json(versions.stamped(stored_fp, versions.FINGERPRINT))
            if old is None or old["kind"] != new.kind:
                continue  # a baseline
            before = fp.Fingerprint.from_dict(old)
            parts = compare(collector, before, new)
            if parts:
                previous.append(old["job_id"])
                diff += [
                    fp.diff_entry(collector, p, before.parts.get(p), new.parts.get(p))
                    for p in parts
                ]
        if not diff:
            return None, updates
        change = Change(new_id("ch_"), schedule_id, job_id, max(previous), at, diff)
        return change, updates

    def _write(
        self,
        pipe: Any,
        schedule_id: str,
        done_key: str,
        change: Change | None,
        updates: Mapping[str, str],
    ) -> None:
        fp_key = self.keys.change_fingerprints(schedule_id)
        if updates:
            pipe.hset(fp_key, mapping=dict(updates))
        pipe.expire(fp_key, self.max_age)
        stored = _json(versions.stamped(change.to_dict(), versions.CHANGE)) if change else ""
        pipe.set(done_key, stored, ex=self.done_ttl)
        if change is not None:
            history = self.keys.changes(schedule_id)
            pipe.xadd(history, {CHANGE_FIELD: stored}, maxlen=self.max_count, approximate=False)
            pipe.expire(history, self.max_age)

    def _now(self) -> float:
        """Redis's clock: the one the stream ids come from."""
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    def _trim(self, schedule_id: str) -> None:
        """Entries older than `max_age` go (MAXLEN bounded the count in the same step)."""
        floor = stream_floor(self._now() - self.max_age)
        self.redis.xtrim(self.keys.changes(schedule_id), minid=floor, approximate=False)

    def list(
        self,
        schedule_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        now: float | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Changes newest first, at most `limit`, after `cursor`; and the next cursor."""
        floor = stream_floor((self._now() if now is None else now) - self.max_age)
        return newest_first(
            self.redis,
            self.keys.changes(schedule_id),
            CHANGE_FIELD,
            limit=limit,
            cursor=cursor,
            floor=floor,
        )

    def forget(self, schedule_id: str) -> None:
        """A deleted schedule's fingerprints and history go with it."""
        self.redis.delete(
            self.keys.change_fingerprints(schedule_id), self.keys.changes(schedule_id)
        )


def change_log(ctx: JobContext) -> ChangeLog:
    s = ctx.settings
    return ChangeLog(
        ctx.redis,
        ctx.store.keys,
        max_count=s.change_history_max,
        max_age=s.change_history_max_age,
        done_ttl=s.job_ttl,
    )


def _collector(ctx: JobContext, name: str) -> Collector | None:
    """The collector `name` of this process; None when it has no such (e.g. a plugin
    loaded elsewhere): its results get the default fingerprint."""
    try:
        return ctx.registry.get(name)
    except KeyError:
        return None


def fingerprints_of(
    ctx: JobContext, envelope: Mapping[str, Any], options: fp.FingerprintOptions
) -> dict[str, fp.Fingerprint]:
    """The fingerprint of each succeeded collector of a job (a failing fingerprint
    function is logged and leaves its collector out)."""
    job_id = envelope["id"]

    def artifact(name: str) -> bytes | None:
        found = ctx.store.artifacts.get(job_id, name)
        return found[0] if found else None

    out: dict[str, fp.Fingerprint] = {}
    for name, result in sorted((envelope.get("results") or {}).items()):
        if result.get("status") != SUCCEEDED or result.get("data") is None:
            continue
        collector = _collector(ctx, name)
        try:
            out[name] = (
                collector.fingerprint(result["data"], options, artifact)
                if collector is not None
                else fp.data_fingerprint(name, result["data"])
            )
        except Exception:  # a plugin's bug must not stop the finalizer
            log.exception("fingerprint failed", extra={"job_id": job_id, "collector": name})
    return out


def _change_options(ctx: JobContext, schedule_id: str) -> Mapping[str, Any] | None:
    """The schedule's `change_detection` ({}: the defaults); None: there is no such schedule."""
    try:
        schedule = load_schedule(ctx, schedule_id, None)
    except NotFound:
        return None
    options: Mapping[str, Any] = schedule.get("change_detection") or {}
    return options


def record_run(
    ctx: JobContext,
    envelope: Mapping[str, Any],
    *,
    options: Mapping[str, Any] | None = None,
) -> Change | None:
    """Compare a final job of a schedule with the schedule's previous results.

    Returns the change (also when this job's change was recorded by an earlier call),
    or None: no schedule (or a deleted one), a first run, or nothing changed. `options`
    overrides the schedule's `change_detection`.
    """
    schedule_id = envelope.get("schedule_id")
    if not schedule_id:
        return None
    chosen = options if options is not None else _change_options(ctx, schedule_id)
    if chosen is None:  # deleted while this run went on: its history went with it (`forget`)
        return None
    opts = fp.FingerprintOptions.from_mapping(chosen)
    fingerprints = fingerprints_of(ctx, envelope, opts)

    def compare(name: str, before: fp.Fingerprint, after: fp.Fingerprint) -> list[str]:
        collector = _collector(ctx, name)
        if collector is None:
            return fp.changed_parts(before, after)
        return collector.changed_parts(before, after, opts)

    change, new = change_log(ctx).record(schedule_id, envelope["id"], fingerprints, compare)
    if change is not None and new:
        for collector in change.collectors:
            SCHEDULE_CHANGES.labels(collector).inc()
        log.info(
            "schedule changed",
            extra={
                "schedule_id": schedule_id,
                "job_id": envelope["id"],
                "change_id": change.id,
                "parts": [f"{d['collector']}.{d['part']}" for d in change.diff],
            },
        )
    return change


def forget(ctx: JobContext, schedule_id: str) -> None:
    """Drop a schedule's fingerprints and change history (its deletion)."""
    change_log(ctx).forget(schedule_id)
