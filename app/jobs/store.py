"""The job store: job records and per-collector results in Redis (artifacts: `artifacts`).

Layout (all keys under the configured prefix ``p``; names in `app.rediskeys`,
lifetimes in docs/architecture.md)::

    p job:{id}          hash  id owner target collectors options labels created_at
                              status started_at finished_at schedule_id schema_version
                              s:{c} a:{c} r:{c}   status, attempt, result JSON per collector
    p idx:{owner}       zset  job ids (score 0, ordered by id = by time)
    p idx-all           zset  every job id (admin listing; no owner name can reach it)
    p idem:{owner}:{h}  str   job id (and request body hash) for an Idempotency-Key
    p reuse:{owner}:{i} list  newest job ids with one identity hash (`app.jobs.reuse`)
    p watch             zset  unfinished collectors ``{id}|{c}``, score = the time by
                              which the reaper expects news (heartbeat, start, retry)
    p queued:{owner}    zset  job ids still queued (score: created, epoch s): the quota

The job hash also counts, per collector, redeliveries after a crash (x:{c}),
requeues by the reaper (k:{c}) and terminal records (t:{c}: an audit that
the fault tests read; forward-only recording keeps it at 1).

A collector's state only moves forward (Lua in `app.jobs.lua`, atomic): a
redelivered task can neither record twice nor move a finished collector back,
and the job's final state is decided once, by whichever collector finishes last.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from app.jobs import lua
from app.jobs.artifacts import ArtifactStore
from app.jobs.createlua import CREATE
from app.jobs.envelope import build_envelope, utcnow
from app.jobs.ids import id_floor, new_id
from app.migrations import versions
from app.rediskeys import RedisKeys, split_watch_member, watch_member
from schemas.status import TERMINAL_COLLECTOR, TERMINAL_JOB, CollectorStatus, JobStatus

__all__ = ["ALL_OWNERS", "Begin", "JobSpec", "JobStore", "ListFilter", "Transition", "Watched"]

# Listing "every owner" (admins) is None, not a string: no owner name, not even `*`, can
# mean it. The admin index has a Redis key of its own (`RedisKeys.all_jobs`).
ALL_OWNERS: None = None


@dataclass(frozen=True)
class JobSpec:
    """What a task needs to run one collector of a job."""

    id: str
    target: str
    options: dict[str, Any]
    status: str
    collector_status: str
    attempt: int
    owner: str | None = None  # when read by `begin` (the artifacts' ledger is the owner's)


@dataclass(frozen=True)
class Transition:
    # ok | final (this made the job final) | announce (that too, and its finalizer is
    # due: app.jobs.finalize) | stale | missing
    outcome: str
    job_status: str

    @property
    def recorded(self) -> bool:
        return self.outcome in ("ok", "final", "announce")


@dataclass(frozen=True)
class Begin:
    outcome: str  # ok | limit | done | missing
    attempt: int
    spec: JobSpec | None = None  # with `ok`: what the run needs, read by the same script


@dataclass(frozen=True)
class Watched:
    """An unfinished collector as the reaper sees it."""

    job_id: str
    collector: str
    status: str  # the collector's
    attempt: int
    requeues: int
    created_at: str
    owner: str
    request_id: str | None = None


@dataclass(frozen=True)
class ListFilter:
    status: str | None = None
    collector: str | None = None
    label: tuple[str, str] | None = None

    def matches(self, status: str, collectors: list[str], labels: dict[str, str]) -> bool:
        if self.status and status != self.status:
            return False
        if self.collector and self.collector not in collectors:
            return False
        return not (self.label and labels.get(self.label[0]) != self.label[1])


def _s(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


class JobStore:
    """Redis-backed records. Holds a client (binary-safe, no decode) and the key prefix."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "cq:",
        ttl: int = 7 * 24 * 3600,
        *,
        queued_grace: float = 300.0,
        deadline: int | None = None,
    ) -> None:
        self.redis = redis
        self.keys = RedisKeys(prefix)
        self.ttl = ttl  # kept after a job ends (every final transition sets it)
        # A job not ended yet keeps its record this long from its creation and from each
        # collector's start (JOB_DEADLINE, at most JOB_TTL; None: as long as that), however
        # late the reaper ends it, and JOB_TTL once it ended: it does not vanish unended
        # (docs/decisions.md, "Reliability: a record outlives its job's deadline").
        self.live_ttl = ttl + (ttl if deadline is None else deadline)
        self.queued_grace = queued_grace
        self.artifacts = ArtifactStore(redis, self.keys, ttl)
        self._record = redis.register_script(lua.RECORD)
        self._begin = redis.register_script(lua.BEGIN)
        self._close = redis.register_script(lua.CLOSE)
        self._reap_claim = redis.register_script(lua.REAP_CLAIM)
        self._create = redis.register_script(CREATE)
        self._legacy_adopted = False

    # create / delete ----------------------------------------------------------
    def claim_idempotency_key(
        self, owner: str, key: str, job_id: str, body_hash: str | None = None
    ) -> tuple[str, str | None] | None:
        """Bind `key` to `job_id` (and the request's `body_hash`); return the job id and
        body hash bound earlier, if any (the hash is None for a key bound without one)."""
        k = self.keys.idempotency(owner, key)
        value = f"{job_id} {body_hash}" if body_hash else job_id
        if self.redis.set(k, value, nx=True, ex=self.ttl):
            return None
        earlier = _s(cast(bytes | None, self.redis.get(k)))
        if earlier is None:  # expired in between: take it
            return self.claim_idempotency_key(owner, key, job_id, body_hash)
        earlier_id, _, earlier_hash = earlier.partition(" ")
        return earlier_id, earlier_hash or None

    def release_idempotency_key(self, owner: str, key: str) -> None:
        self.redis.delete(self.keys.idempotency(owner, key))

    def create(
        self,
        *,
        owner: str,
        target: str,
        collectors: list[str],
        options: dict[str, dict[str, Any]],
        labels: dict[str, str],
        schedule_id: str | None = None,
        job_id: str | None = None,
        request_id: str | None = None,
        callback_url: str | None = None,
        callback_on: builtins.list[str] | None = None,
        callback_artifacts: str | None = None,
    ) -> dict[str, Any]:
        """Write a queued job record and index it; return its envelope."""
        job_id = job_id or new_id("j_")
        now = utcnow()
        fields: dict[Any, str | int] = {  # Any: redis-py types keys invariantly
            "id": job_id,
            "owner": owner,
            "target": target,
            "collectors": json.dumps(collectors),
            "options": json.dumps(options),
            "labels": json.dumps(labels),
            "created_at": now,
            "status": JobStatus.QUEUED,
            versions.FIELD: versions.JOB,  # the stored format (app.migrations)
        }
        if schedule_id:
            fields["schedule_id"] = schedule_id
        if request_id:  # not in the envelope: for the reaper's requeue (its log lines)
            fields["request_id"] = request_id
        if callback_url:  # the job's webhook (app.webhooks)
            on = json.dumps(callback_on or ["always"])
            fields |= {"callback_url": callback_url, "callback_on": on}
            if callback_artifacts == "inline":  # absent: links
                fields["callback_artifacts"] = callback_artifacts
        queued = json.dumps({"status": CollectorStatus.QUEUED, "attempts": 0})
        for name in collectors:
            fields |= {f"s:{name}": CollectorStatus.QUEUED, f"a:{name}": 0, f"r:{name}": queued}
        owner_index, all_index = self._indexes(owner)
        args = {
            "fields": {k: str(v) for k, v in fields.items()},
            "id": job_id,
            "ttl": self.live_ttl,
            "floor": id_floor("j_", time.time() - self.live_ttl),
            "watch": [watch_member(job_id, name) for name in collectors],
            "due": repr(time.time() + self.queued_grace),
            "queued_at": repr(time.time()),
            "collectors": collectors,
            "evo": self.keys.owner_events_prefix,
            "at": now,
            "queued": CollectorStatus.QUEUED,
        }
        self._create(
            keys=[
                self.keys.job(job_id),
                *self._event_keys(job_id),
                self.keys.watch,
                owner_index,
                all_index,
                self.keys.queued(owner),
            ],
            args=[json.dumps(args)],
        )
        return self._envelope({k: str(v) for k, v in fields.items()})

    def delete(self, job_id: str, owner: str) -> None:
        """Remove a job that was never accepted (its publish failed)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.job(job_id))
        for index in self._indexes(owner):
            pipe.zrem(index, job_id)
        pipe.zrem(self.keys.queued(owner), job_id)
        pipe.execute()
        # the members of the watch set go with the reaper's next pass (job missing)

    def queued_count(self, owner: str) -> int:
        """Jobs of `owner` still queued (an expired record no longer counts)."""
        key = self.keys.queued(owner)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", f"({time.time() - self.ttl}")
        pipe.zcard(key)
        return int(pipe.execute()[1])

    # read -------------------------------------------------------------------
    def owner_of(self, job_id: str) -> str | None:
        return _s(cast(bytes | None, self.redis.hget(self.keys.job(job_id), "owner")))

    def get(self, job_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The result envelope, or None if there is no such job (or, with `owner`, if it is
        someone else's: one read either way)."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.job(job_id)))
        if not raw or (owner is not None and raw.get(b"owner") != owner.encode()):
            return None
        return self._envelope({k.decode(): v.decode() for k, v in raw.items()})

    @staticmethod
    def _envelope(h: dict[str, str]) -> dict[str, Any]:
        collectors = json.loads(h["collectors"])
        return build_envelope(
            job_id=h["id"],
            status=h["status"],
            target=h["target"],
            collectors=collectors,
            created_at=h["created_at"],
            started_at=h.get("started_at"),
            finished_at=h.get("finished_at"),
            labels=json.loads(h["labels"]),
            schedule_id=h.get("schedule_id"),
            results={name: json.loads(h[f"r:{name}"]) for name in collectors},
            callback=_callback(h),
        )

    def status(self, job_id: str) -> str | None:
        return _s(cast(bytes | None, self.redis.hget(self.keys.job(job_id), "status")))

    def spec(self, job_id: str, collector: str) -> JobSpec | None:
        """What the task for `collector` needs, or None if the job is gone."""
        target, options, status, cstatus, attempt = cast(
            list[bytes | None],
            self.redis.hmget(
                self.keys.job(job_id),
                ["target", "options", "status", f"s:{collector}", f"a:{collector}"],
            ),
        )
        if target is None or status is None or cstatus is None:
            return None
        return JobSpec(
            id=job_id,
            target=target.decode(),
            options=json.loads(options or b"{}").get(collector, {}),
            status=status.decode(),
            collector_status=cstatus.decode(),
            attempt=int(attempt or 0),
        )

    def _indexes(self, owner: str) -> tuple[str, str]:
        """The indexes a job of `owner` is in: its owner's and the admin one."""
        return self.keys.index(owner), self.keys.all_jobs

    def _adopt_legacy_index(self) -> None:
        """Merge the pre-`idx-all` admin index (``idx:*``) into the current one, once."""
        if self._legacy_adopted:
            return
        legacy = self.keys.legacy_all_jobs
        if self.redis.exists(legacy):
            pipe = self.redis.pipeline(transaction=True)
            pipe.zunionstore(self.keys.all_jobs, [self.keys.all_jobs, legacy])
            pipe.delete(legacy)
            pipe.execute()
        self._legacy_adopted = True

    def iter_ids(self, owner: str | None, cursor: str | None) -> Iterator[str]:
        """Job ids of `owner` (None = ALL_OWNERS: every job), newest first, after `cursor`."""
        if owner is None:
            self._adopt_legacy_index()
        key = self.keys.all_jobs if owner is None else self.keys.index(owner)
        upper = f"({cursor}" if cursor else "+"
        while True:
            batch = cast(list[bytes], self.redis.zrevrangebylex(key, upper, "-", start=0, num=200))
            if not batch:
                return
            for raw in batch:
                yield raw.decode()
            upper = f"({batch[-1].decode()}"

    def list(
        self,
        owner: str | None,
        flt: ListFilter,
        *,
        limit: int,
        cursor: str | None,
        scan_max: int = 5000,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of envelopes matching `flt`, and the cursor of the next page (or None).

        Scans at most `scan_max` ids per call, so a rare filter costs bounded
        work; the returned cursor lets the client continue the scan.
        """
        items: list[dict[str, Any]] = []
        last: str | None = None
        for scanned, job_id in enumerate(self.iter_ids(owner, cursor), start=1):
            last = job_id
            env = self.get(job_id)
            if env is None:  # expired: drop it from the index (the owner's is trimmed at create)
                stale = [self.keys.all_jobs] if owner is None else self._indexes(owner)
                for index in stale:
                    self.redis.zrem(index, job_id)
            elif flt.matches(env["status"], env["collectors"], env["labels"]):
                items.append(env)
                if len(items) == limit:
                    return items, job_id
            if scanned >= scan_max:
                return items, last
        return items, None

    # transitions -------------------------------------------------------------
    def record(
        self,
        job_id: str,
        collector: str,
        status: str,
        attempt: int,
        result: dict[str, Any],
        *,
        watch_in: float | None = None,
    ) -> Transition:
        """Move `collector` forward to `status` (atomic, idempotent).

        `watch_in`: seconds until the reaper should look at the collector again
        (a retry's countdown plus grace); a terminal status ends the watch.
        """
        body = json.dumps({"status": status, "attempts": attempt, **result})
        score = "" if watch_in is None else repr(time.time() + watch_in)
        out = cast(
            list[bytes],
            self._record(
                keys=[
                    self.keys.job(job_id),
                    self.keys.watch,
                    self.keys.finished,
                    *self._event_keys(job_id),
                ],
                args=[
                    collector,
                    status,
                    attempt,
                    body,
                    utcnow(),
                    self.ttl,
                    score,
                    watch_member(job_id, collector),
                    self.keys.queued_prefix,
                    repr(time.time()),
                    self.keys.owner_events_prefix,  # live events
                ],
            ),
        )
        return Transition(out[0].decode(), out[1].decode())

    def begin(
        self, job_id: str, collector: str, *, heartbeat_timeout: float, max_redeliveries: int
    ) -> Begin:
        """A delivery starts `collector`: mark it running (attempt + 1) unless it is
        finished, or crashed more than `max_redeliveries` times already."""
        started_at = utcnow()
        body = json.dumps({"status": CollectorStatus.RUNNING, "started_at": started_at})
        out = cast(
            list[Any],
            self._begin(
                keys=[self.keys.job(job_id), self.keys.watch, *self._event_keys(job_id)],
                args=[
                    collector,
                    started_at,
                    repr(time.time() + heartbeat_timeout),
                    max_redeliveries,
                    body,
                    watch_member(job_id, collector),
                    self.keys.queued_prefix,
                    self.keys.owner_events_prefix,  # live events
                    self.live_ttl,
                ],
            ),
        )
        outcome, attempt = out[0].decode(), int(out[1])
        if outcome != "ok" or len(out) < 5 or out[2] is None:
            return Begin(outcome, attempt)
        spec = JobSpec(
            id=job_id,
            target=out[2].decode(),
            options=json.loads(out[3] or b"{}").get(collector, {}),
            status=JobStatus.RUNNING,
            collector_status=CollectorStatus.RUNNING,
            attempt=attempt,
            owner=_s(out[4]),
        )
        return Begin(outcome, attempt, spec)

    def beat(self, job_id: str, collector: str, heartbeat_timeout: float) -> bool:
        """Refresh a running collector's heartbeat; False once it is no longer watched."""
        entry = {watch_member(job_id, collector): time.time() + heartbeat_timeout}
        return bool(self.redis.zadd(self.keys.watch, entry, xx=True, ch=True))

    def beat_many(self, runs: builtins.list[tuple[str, str, float]]) -> builtins.list[bool]:
        """`beat` for each (job id, collector, heartbeat timeout), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        now = time.time()
        for job_id, collector, timeout in runs:
            entry = {watch_member(job_id, collector): now + timeout}
            pipe.zadd(self.keys.watch, entry, xx=True, ch=True)
        return [bool(changed) for changed in pipe.execute()]

    def _event_keys(self, job_id: str) -> tuple[str, str]:
        """The live-event streams a script writes besides the owner's (app.jobs.events)."""
        return self.keys.events(job_id), self.keys.all_events

    def _close_job(self, job_id: str, cstatus: str, jstatus: str, error: dict[str, Any]) -> str:
        body = json.dumps({"status": cstatus, "attempts": 0, "error": error})
        out = cast(
            bytes,
            self._close(
                keys=[
                    self.keys.job(job_id),
                    self.keys.watch,
                    self.keys.finished,
                    *self._event_keys(job_id),
                ],
                args=[
                    utcnow(),
                    self.ttl,
                    body,
                    cstatus,
                    jstatus,
                    self.keys.queued_prefix,
                    repr(time.time()),
                    self.keys.owner_events_prefix,  # live events
                ],
            ),
        )
        return out.decode()

    def cancel(self, job_id: str) -> str | None:
        """Cancel a job that has not finished; return its status after (None if unknown)."""
        return (
            self._close_job(
                job_id,
                CollectorStatus.CANCELLED,
                JobStatus.CANCELLED,
                {"type": "cancelled", "detail": "cancelled by the client", "retryable": False},
            )
            or None
        )

    def expire(self, job_id: str, detail: str) -> str | None:
        """End a job that outlived its deadline: unfinished collectors are skipped."""
        return (
            self._close_job(
                job_id,
                CollectorStatus.SKIPPED,
                JobStatus.EXPIRED,
                {"type": "expired", "detail": detail, "retryable": False},
            )
            or None
        )

    def is_cancelled(self, job_id: str) -> bool:
        return self.status(job_id) == JobStatus.CANCELLED

    # reaper --------------------------------------------------------------------
    def overdue(self, now: float, limit: int = 500) -> builtins.list[str]:
        """Watch members (``{job}|{collector}``) whose time passed, oldest first."""
        found = self.redis.zrangebyscore(self.keys.watch, "-inf", now, start=0, num=limit)
        raw = cast(builtins.list[bytes], found)
        return [m.decode() for m in raw]

    def watched(self, member: str) -> Watched | None:
        """The state of a watch member, or None (and the member dropped) if it is done."""
        job_id, collector = split_watch_member(member)
        status, attempt, requeues, created_at, owner, request_id = cast(
            builtins.list[bytes | None],
            self.redis.hmget(
                self.keys.job(job_id),
                [
                    f"s:{collector}",
                    f"a:{collector}",
                    f"k:{collector}",
                    "created_at",
                    "owner",
                    "request_id",
                ],
            ),
        )
        if status is None or created_at is None or status.decode() in TERMINAL_COLLECTOR:
            self.redis.zrem(self.keys.watch, member)
            return None
        return Watched(
            job_id=job_id,
            collector=collector,
            status=status.decode(),
            attempt=int(attempt or 0),
            requeues=int(requeues or 0),
            created_at=created_at.decode(),
            owner=(owner or b"").decode(),
            request_id=_s(request_id),
        )

    def postpone(self, member: str, seconds: float) -> None:
        """Look at `member` again in `seconds` (if it is still watched)."""
        self.redis.zadd(self.keys.watch, {member: time.time() + seconds}, xx=True)

    def claim_overdue(self, w: Watched, *, now: float, max_requeues: int) -> str:
        """requeue | fail | skip, decided atomically against concurrent tasks."""
        out = cast(
            bytes,
            self._reap_claim(
                keys=[self.keys.job(w.job_id), self.keys.watch],
                args=[
                    watch_member(w.job_id, w.collector),
                    w.collector,
                    now,
                    repr(time.time() + self.queued_grace),
                    max_requeues,
                    w.status,
                ],
            ),
        )
        return out.decode()

    @staticmethod
    def is_terminal(status: str | None) -> bool:
        return status in TERMINAL_JOB


def _callback(h: dict[str, str]) -> dict[str, Any] | None:
    """The envelope's `callback` (`artifacts` only when not the default links)."""
    if not h.get("callback_url"):
        return None
    callback: dict[str, Any] = {"url": h["callback_url"], "on": json.loads(h["callback_on"])}
    if h.get("callback_artifacts"):
        callback["artifacts"] = h["callback_artifacts"]
    return callback
