"""The job store: job records, per-collector results and artifacts in Redis.

Layout (all keys under the configured prefix ``p``)::

    p job:{id}          hash  id owner target collectors options labels created_at
                              status started_at finished_at schedule_id
                              s:{c} a:{c} r:{c}   status, attempt, result JSON per collector
    p art:{id}:{name}   hash  body content_type       raw bytes, never base64
    p idx:{owner}       zset  job ids (score 0, ordered by id = by time)
    p idx:*             zset  every job id (admin listing)
    p idem:{owner}:{h}  str   job id for an Idempotency-Key
    p queued:{owner}    zset  job ids still queued (score: created, epoch s): the quota

A collector's state only moves forward (Lua, atomic): a redelivered task can
neither record twice nor move a finished collector back, and the job's final
state is decided once, by whichever collector finishes last.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis

from app.ids import id_floor, new_id
from schemas import SCHEMA_VERSION
from schemas.status import TERMINAL_JOB, CollectorStatus, JobStatus

__all__ = ["JobSpec", "JobStore", "ListFilter", "Transition", "utcnow"]

ALL_OWNERS = "*"

# KEYS[1] job key. ARGV: collector, status, attempt, result JSON, now, ttl, key prefix.
# Returns {outcome, job status}; outcome is ok | final | stale | missing.
_RECORD = """
local key = KEYS[1]
local c, new, res, now, prefix = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[7]
local attempt, ttl = tonumber(ARGV[3]), tonumber(ARGV[6])
local terminal = {succeeded=true, failed=true, cancelled=true, skipped=true}
local cur = redis.call('HGET', key, 's:' .. c)
if not cur then return {'missing', ''} end
local jstatus = redis.call('HGET', key, 'status')
if terminal[cur] then return {'stale', jstatus} end
if attempt < tonumber(redis.call('HGET', key, 'a:' .. c) or '0') then return {'stale', jstatus} end
redis.call('HSET', key, 's:' .. c, new, 'a:' .. c, attempt, 'r:' .. c, res)
if jstatus == 'queued' then
  redis.call('HSET', key, 'status', 'running', 'started_at', now)
  local owner, id = unpack(redis.call('HMGET', key, 'owner', 'id'))
  redis.call('ZREM', prefix .. 'queued:' .. owner, id)
  jstatus = 'running'
end
if not terminal[new] then return {'ok', jstatus} end
local names = cjson.decode(redis.call('HGET', key, 'collectors'))
local ok, cancelled = 0, 0
for _, name in ipairs(names) do
  local s = redis.call('HGET', key, 's:' .. name)
  if not terminal[s] then return {'ok', jstatus} end
  if s == 'succeeded' then ok = ok + 1 elseif s == 'cancelled' then cancelled = cancelled + 1 end
end
local final = 'partial'
if ok == #names then final = 'succeeded'
elseif cancelled == #names then final = 'cancelled'
elseif ok == 0 then final = 'failed' end
redis.call('HSET', key, 'status', final, 'finished_at', now)
redis.call('EXPIRE', key, ttl)
return {'final', final}
"""

# KEYS[1] job key. ARGV: now, ttl, cancelled result JSON, key prefix.
# Returns the job status after.
_CANCEL = """
local key = KEYS[1]
local jstatus = redis.call('HGET', key, 'status')
if not jstatus then return '' end
local terminal = {succeeded=true, partial=true, failed=true, cancelled=true, expired=true}
if terminal[jstatus] then return jstatus end
local owner, id = unpack(redis.call('HMGET', key, 'owner', 'id'))
redis.call('ZREM', ARGV[4] .. 'queued:' .. owner, id)
local cterminal = {succeeded=true, failed=true, cancelled=true, skipped=true}
for _, name in ipairs(cjson.decode(redis.call('HGET', key, 'collectors'))) do
  if not cterminal[redis.call('HGET', key, 's:' .. name)] then
    redis.call('HSET', key, 's:' .. name, 'cancelled', 'r:' .. name, ARGV[3])
  end
end
redis.call('HSET', key, 'status', 'cancelled', 'finished_at', ARGV[1])
redis.call('EXPIRE', key, tonumber(ARGV[2]))
return 'cancelled'
"""


def utcnow() -> str:
    """ISO 8601 UTC with milliseconds, the one timestamp format of the API."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobSpec:
    """What a task needs to run one collector of a job."""

    id: str
    target: str
    options: dict[str, Any]
    status: str
    collector_status: str
    attempt: int


@dataclass(frozen=True)
class Transition:
    outcome: str  # ok | final | stale | missing
    job_status: str

    @property
    def recorded(self) -> bool:
        return self.outcome in ("ok", "final")


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

    def __init__(self, redis: Redis, prefix: str = "cq:", ttl: int = 7 * 24 * 3600) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self._record = redis.register_script(_RECORD)
        self._cancel = redis.register_script(_CANCEL)

    # keys -----------------------------------------------------------------
    def _job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _art(self, job_id: str, name: str) -> str:
        return f"{self.prefix}art:{job_id}:{name}"

    def _idx(self, owner: str) -> str:
        return f"{self.prefix}idx:{owner}"

    def _queued(self, owner: str) -> str:
        return f"{self.prefix}queued:{owner}"

    def _idem(self, owner: str, key: str) -> str:
        return f"{self.prefix}idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    # create / delete ----------------------------------------------------------
    def claim_idempotency_key(self, owner: str, key: str, job_id: str) -> str | None:
        """Bind `key` to `job_id`; return the job id bound earlier, if any."""
        k = self._idem(owner, key)
        if self.redis.set(k, job_id, nx=True, ex=self.ttl):
            return None
        return _s(cast(bytes | None, self.redis.get(k)))

    def release_idempotency_key(self, owner: str, key: str) -> None:
        self.redis.delete(self._idem(owner, key))

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
        }
        if schedule_id:
            fields["schedule_id"] = schedule_id
        queued = json.dumps({"status": CollectorStatus.QUEUED, "attempts": 0})
        for name in collectors:
            fields |= {f"s:{name}": CollectorStatus.QUEUED, f"a:{name}": 0, f"r:{name}": queued}
        floor = id_floor("j_", time.time() - self.ttl)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._job(job_id), mapping=fields)
        pipe.expire(self._job(job_id), self.ttl)
        for owner_key in (owner, ALL_OWNERS):
            pipe.zadd(self._idx(owner_key), {job_id: 0})
            pipe.zremrangebylex(self._idx(owner_key), "-", f"({floor}")
        pipe.zadd(self._queued(owner), {job_id: time.time()})
        pipe.execute()
        return self._envelope({k: str(v) for k, v in fields.items()})

    def delete(self, job_id: str, owner: str) -> None:
        """Remove a job that was never accepted (its publish failed)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._job(job_id))
        for owner_key in (owner, ALL_OWNERS):
            pipe.zrem(self._idx(owner_key), job_id)
        pipe.zrem(self._queued(owner), job_id)
        pipe.execute()

    def queued_count(self, owner: str) -> int:
        """Jobs of `owner` still queued (an expired record no longer counts)."""
        key = self._queued(owner)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", f"({time.time() - self.ttl}")
        pipe.zcard(key)
        return int(pipe.execute()[1])

    # read -------------------------------------------------------------------
    def owner_of(self, job_id: str) -> str | None:
        return _s(cast(bytes | None, self.redis.hget(self._job(job_id), "owner")))

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The result envelope, or None if there is no such job."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self._job(job_id)))
        if not raw:
            return None
        return self._envelope({k.decode(): v.decode() for k, v in raw.items()})

    @staticmethod
    def _envelope(h: dict[str, str]) -> dict[str, Any]:
        collectors = json.loads(h["collectors"])
        return {
            "id": h["id"],
            "schema_version": SCHEMA_VERSION,
            "status": h["status"],
            "target": h["target"],
            "collectors": collectors,
            "created_at": h["created_at"],
            "started_at": h.get("started_at"),
            "finished_at": h.get("finished_at"),
            "labels": json.loads(h["labels"]),
            "schedule_id": h.get("schedule_id"),
            "results": {name: json.loads(h[f"r:{name}"]) for name in collectors},
        }

    def status(self, job_id: str) -> str | None:
        return _s(cast(bytes | None, self.redis.hget(self._job(job_id), "status")))

    def spec(self, job_id: str, collector: str) -> JobSpec | None:
        """What the task for `collector` needs, or None if the job is gone."""
        target, options, status, cstatus, attempt = cast(
            list[bytes | None],
            self.redis.hmget(
                self._job(job_id),
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

    def iter_ids(self, owner: str, cursor: str | None) -> Iterator[str]:
        """Job ids of `owner` (or ALL_OWNERS), newest first, after `cursor`."""
        key = self._idx(owner)
        upper = f"({cursor}" if cursor else "+"
        while True:
            batch = cast(list[bytes], self.redis.zrevrangebylex(key, upper, "-", start=0, num=200))
            if not batch:
                return
            for raw in batch:
                yield raw.decode()
            upper = f"({batch[-1].decode()}"

    def list(
        self, owner: str, flt: ListFilter, *, limit: int, cursor: str | None, scan_max: int = 5000
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
            if env is None:  # expired: drop it from the index
                for owner_key in (owner, ALL_OWNERS):
                    self.redis.zrem(self._idx(owner_key), job_id)
            elif flt.matches(env["status"], env["collectors"], env["labels"]):
                items.append(env)
                if len(items) == limit:
                    return items, job_id
            if scanned >= scan_max:
                return items, last
        return items, None

    # transitions -------------------------------------------------------------
    def record(
        self, job_id: str, collector: str, status: str, attempt: int, result: dict[str, Any]
    ) -> Transition:
        """Move `collector` forward to `status` (atomic, idempotent)."""
        body = json.dumps({"status": status, "attempts": attempt, **result})
        out = cast(
            list[bytes],
            self._record(
                keys=[self._job(job_id)],
                args=[collector, status, attempt, body, utcnow(), self.ttl, self.prefix],
            ),
        )
        return Transition(out[0].decode(), out[1].decode())

    def cancel(self, job_id: str) -> str | None:
        """Cancel a job that has not finished; return its status after (None if unknown)."""
        body = json.dumps({"status": CollectorStatus.CANCELLED, "attempts": 0})
        out = cast(
            bytes,
            self._cancel(keys=[self._job(job_id)], args=[utcnow(), self.ttl, body, self.prefix]),
        )
        return out.decode() or None

    @staticmethod
    def is_terminal(status: str | None) -> bool:
        return status in TERMINAL_JOB

    # artifacts ------------------------------------------------------------------
    def put_artifact(self, job_id: str, name: str, content_type: str, body: bytes) -> None:
        key = self._art(job_id, name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"body": body, "content_type": content_type})
        pipe.expire(key, self.ttl)
        pipe.execute()

    def get_artifact(self, job_id: str, name: str) -> tuple[bytes, str] | None:
        body, ctype = cast(
            list[bytes | None], self.redis.hmget(self._art(job_id, name), ["body", "content_type"])
        )
        if body is None or ctype is None:
            return None
        return body, ctype.decode()
