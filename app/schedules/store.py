"""Schedule records, their run history and running jobs, in Redis (keys: app/rediskeys.py).

A schedule is a hash ``sch:{id}`` (owner, paused, the JSON definition, times,
schema_version) indexed per owner and for admins; its trigger lives in redbeat's entry
(app/schedules/entries.py). A run is a JSON member of ``schruns:{id}`` scored by its fire
time (with its schema_version), trimmed by count and age at each write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from app.migrations import versions
from app.rediskeys import RedisKeys

__all__ = ["ScheduleStore"]


def _s(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


@dataclass
class ScheduleStore:
    redis: Redis
    keys: RedisKeys
    runs_max: int = 1000
    runs_max_age: float = 30 * 86400

    # records ----------------------------------------------------------------
    def create(self, schedule_id: str, owner: str, definition: dict[str, Any]) -> None:
        now = repr(time.time())
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.keys.schedule(schedule_id),
            mapping={
                "owner": owner,
                "paused": "0",
                "definition": json.dumps(definition, separators=(",", ":")),
                "created_at": now,
                "updated_at": now,
                versions.FIELD: versions.SCHEDULE,  # the stored format (app.migrations)
            },
        )
        pipe.zadd(self.keys.schedule_index(owner), {schedule_id: 0})
        pipe.zadd(self.keys.all_schedules, {schedule_id: 0})
        pipe.execute()

    def get(self, schedule_id: str) -> dict[str, Any] | None:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.schedule(schedule_id)))
        if not raw or b"definition" not in raw:
            return None
        return {
            "id": schedule_id,
            "owner": raw[b"owner"].decode(),
            "paused": raw.get(b"paused") == b"1",
            "created_at": float(raw[b"created_at"]),
            "updated_at": float(raw[b"updated_at"]),
            **json.loads(raw[b"definition"]),
        }

    def owner_of(self, schedule_id: str) -> str | None:
        return _s(cast(bytes | None, self.redis.hget(self.keys.schedule(schedule_id), "owner")))

    def update(self, schedule_id: str, definition: dict[str, Any]) -> None:
        self.redis.hset(
            self.keys.schedule(schedule_id),
            mapping={
                "definition": json.dumps(definition, separators=(",", ":")),
                "updated_at": repr(time.time()),
            },
        )

    def set_paused(self, schedule_id: str, paused: bool) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.keys.schedule(schedule_id),
            mapping={"paused": "1" if paused else "0", "updated_at": repr(time.time())},
        )
        if paused:
            pipe.sadd(self.keys.paused_schedules, schedule_id)
        else:
            pipe.srem(self.keys.paused_schedules, schedule_id)
        pipe.execute()

    def delete(self, schedule_id: str, owner: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(
            self.keys.schedule(schedule_id),
            self.keys.schedule_runs(schedule_id),
            self.keys.schedule_running(schedule_id),
            self.keys.schedule_queued(schedule_id),
        )
        pipe.zrem(self.keys.schedule_index(owner), schedule_id)
        pipe.zrem(self.keys.all_schedules, schedule_id)
        pipe.srem(self.keys.paused_schedules, schedule_id)
        pipe.execute()

    def iter_ids(self, owner: str | None, cursor: str | None) -> Iterator[str]:
        """Schedule ids of `owner` (None: every owner), newest first, after `cursor`."""
        key = self.keys.all_schedules if owner is None else self.keys.schedule_index(owner)
        upper = f"({cursor}" if cursor else "+"
        while True:
            batch = cast(list[bytes], self.redis.zrevrangebylex(key, upper, "-", start=0, num=200))
            if not batch:
                return
            yield from (raw.decode() for raw in batch)
            upper = f"({batch[-1].decode()}"

    def page(
        self, owner: str | None, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        items: list[dict[str, Any]] = []
        for schedule_id in self.iter_ids(owner, cursor):
            record = self.get(schedule_id)
            if record is None:
                continue
            items.append(record)
            if len(items) == limit:
                return items, schedule_id
        return items, None

    def counts(self) -> tuple[int, int]:
        """(all schedules, paused ones)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys.all_schedules)
        pipe.scard(self.keys.paused_schedules)
        total, paused = pipe.execute()
        return int(total), int(paused)

    # ticks, runs and running jobs -------------------------------------------
    def claim_tick(self, schedule_id: str, due: float, ttl: int) -> bool:
        """True for the first fire of this tick, False for any repeat."""
        key = self.keys.schedule_tick(schedule_id, int(due * 1000))
        return bool(self.redis.set(key, "1", nx=True, ex=max(ttl, 1)))

    def add_run(self, schedule_id: str, run: dict[str, Any]) -> None:
        key = self.keys.schedule_runs(schedule_id)
        fired = float(run["fired_at"])
        pipe = self.redis.pipeline(transaction=True)
        member = json.dumps(versions.stamped(run, versions.SCHEDULE_RUN), separators=(",", ":"))
        pipe.zadd(key, {member: int(fired * 1000)})
        pipe.zremrangebyscore(key, "-inf", f"({int((fired - self.runs_max_age) * 1000)}")
        pipe.zremrangebyrank(key, 0, -self.runs_max - 1)
        pipe.expire(key, int(self.runs_max_age) + 60)
        pipe.execute()

    def runs(
        self, schedule_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Runs newest first; the cursor is the fire time (ms) of the last one returned."""
        upper = f"({int(cursor)}" if cursor else "+inf"
        raw = cast(
            list[tuple[bytes, float]],
            self.redis.zrevrangebyscore(
                self.keys.schedule_runs(schedule_id),
                upper,
                "-inf",
                start=0,
                num=limit,
                withscores=True,
            ),
        )
        items = [versions.unstamped(json.loads(member)) for member, _ in raw]
        more = len(raw) == limit
        return items, (str(int(raw[-1][1])) if raw and more else None)

    def add_running(self, schedule_id: str, job_id: str) -> None:
        self.redis.sadd(self.keys.schedule_running(schedule_id), job_id)

    def running(self, schedule_id: str) -> list[str]:
        members = cast(set[bytes], self.redis.smembers(self.keys.schedule_running(schedule_id)))
        return sorted(m.decode() for m in members)

    def release(self, schedule_id: str, job_id: str) -> None:
        self.redis.srem(self.keys.schedule_running(schedule_id), job_id)

    def hold_queued(self, schedule_id: str, due: float, ttl: int) -> bool:
        """Take the one place for a tick waiting on a slot; False when one waits already."""
        key = self.keys.schedule_queued(schedule_id)
        if self.redis.set(key, repr(due), nx=True, ex=max(ttl, 1)):
            return True
        return _s(cast(bytes | None, self.redis.get(key))) == repr(due)  # the same tick

    def drop_queued(self, schedule_id: str) -> None:
        self.redis.delete(self.keys.schedule_queued(schedule_id))
