"""The record of a job's webhook deliveries and their attempts.

    p dlv:{subject}  hash  delivery id → JSON {id, event, url, state, created_at,
                           updated_at, attempts: [{attempt, at, status_code | error,
                           duration_ms, response}], schema_version}

The subject is a job id, or ``key_{prefix}`` for an account event about a key; an
account event's record carries its `owner` and the `body` it sends (a job's body is
built from the job at each attempt).

A delivery id is ``{job id}.{event}``: the finalizer creates each delivery once
(HSETNX), so a finalizer that runs twice plans no second set, and the id is
also the ``webhook-id`` header, the same on every retry (receivers deduplicate
by it). Only one task works on a delivery at a time (a retry is the next
message of the same chain), so an attempt is appended by read-modify-write.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any, cast

from redis import Redis

from app.jobs.envelope import utcnow
from app.migrations import versions
from app.rediskeys import RedisKeys

__all__ = ["DeliveryState", "DeliveryStore", "delivery_id"]

RESPONSE_EXCERPT = 256
CLAIM_PREFIX = "claim:"  # fields of the same hash: which attempts a task has taken


class DeliveryState(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


FINAL_STATES = frozenset({DeliveryState.DELIVERED, DeliveryState.FAILED})


# KEYS deliveries hash. ARGV claim field, now (epoch s), stale after (s). 1 if taken now.
_CLAIM = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and tonumber(held) > tonumber(ARGV[2]) - tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def delivery_id(job_id: str, event: str) -> str:
    return f"{job_id}.{event}"


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(versions.stamped(record, versions.DELIVERY))


def _load(raw: bytes) -> dict[str, Any]:
    return versions.unstamped(cast(dict[str, Any], json.loads(raw)))


class DeliveryStore:
    def __init__(self, redis: Redis, keys: RedisKeys, ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._claim = redis.register_script(_CLAIM)

    def create(
        self,
        job_id: str,
        event: str,
        url: str,
        *,
        change: Any = None,
        account: tuple[str, str, dict[str, Any]] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The delivery of `event` for `job_id` (the subject), and whether this call
        created it. `account`: (owner, delivery id, body) of an account event."""
        key, did = self.keys.deliveries(job_id), delivery_id(job_id, event)
        if account is not None:
            did = account[1]
        now = utcnow()
        record: dict[str, Any] = {
            "id": did,
            "event": event,
            "url": url,
            "state": DeliveryState.PENDING.value,
            "created_at": now,
            "updated_at": now,
            "attempts": [],
        }
        if change is not None:  # schedule.changed: the change travels with the delivery
            record["change"] = change
        if account is not None:
            record |= {"owner": account[0], "body": account[2]}
        created = bool(self.redis.hsetnx(key, did, _dump(record)))
        self.redis.expire(key, self.ttl)
        found = self.get(job_id, did)
        return (found if found is not None else record), created

    def get(self, job_id: str, did: str) -> dict[str, Any] | None:
        raw = cast(bytes | None, self.redis.hget(self.keys.deliveries(job_id), did))
        return None if raw is None else _load(raw)

    def list(self, job_id: str) -> list[dict[str, Any]]:
        """The job's deliveries, oldest first."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.deliveries(job_id)))
        items = [_load(v) for k, v in raw.items() if not k.startswith(CLAIM_PREFIX.encode())]
        return sorted(items, key=lambda d: (d["created_at"], d["id"]))

    def add_attempt(
        self, job_id: str, did: str, attempt: dict[str, Any], state: DeliveryState
    ) -> dict[str, Any] | None:
        """Append one attempt and move the delivery to `state`; None if it is gone."""
        record = self.get(job_id, did)
        if record is None:
            return None
        if "response" in attempt and attempt["response"] is not None:
            attempt["response"] = attempt["response"][:RESPONSE_EXCERPT]
        record["attempts"].append(attempt)
        record["state"] = state.value
        record["updated_at"] = utcnow()
        self.redis.hset(self.keys.deliveries(job_id), did, _dump(record))
        return record

    def claim(self, job_id: str, did: str, attempt: int, *, stale_after: float) -> bool:
        """Take attempt `attempt` of `did`: one task per attempt, even when a message is
        duplicated (the finalizer ran twice). A claim older than `stale_after` seconds is
        taken over: its task died mid-attempt and the message came back (acks late)."""
        field = f"{CLAIM_PREFIX}{did}:{attempt}"
        taken = self._claim(
            keys=[self.keys.deliveries(job_id)], args=[field, time.time(), stale_after]
        )
        return bool(taken)
