"""Identical requests: canonical hashes, and finding a job a new request may reuse.

Two hashes (docs/decisions.md, "Scheduling: idempotency, reuse and batch (issue 13)"):

- `request_hash`: the whole loaded request body (sorted-key JSON). Kept with an
  Idempotency-Key, so the same key with another body is refused (422).
- `identity_hash`: what makes two jobs collect the same thing — target, collectors
  (as a set), the options of those collectors, and the callback. A request (unless
  `fresh`) reuses the newest job of its owner with the same identity that is still
  queued/running (in-flight dedupe), or with `max_age` one that succeeded at most
  `max_age` seconds ago.

The candidates of an identity are the last `RECENT` jobs submitted with it
(``p reuse:{owner}:{hash}``, a list, newest first), pushed at submit; their status
and finish time are read from the job records at lookup, so nothing has to hook the
final transition. The lookup and the submit are not one atomic step: two identical
requests within the same millisecond may both create a job (documented).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis import Redis

from app.errors import ValidationFailed
from app.rediskeys import RedisKeys
from schemas.status import JobStatus

__all__ = [
    "IN_FLIGHT",
    "RECENT",
    "SUCCEEDED",
    "IdempotencyKeyReused",
    "Reusable",
    "find_reusable",
    "identity_hash",
    "remember",
    "request_hash",
]

IN_FLIGHT = "in-flight"
SUCCEEDED = "succeeded"
# How many recent jobs of one identity are candidates (a failed newest run does not hide
# a young succeeded one behind it).
RECENT = 8
_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
# One script call, not a MULTI of three commands: the same atomic write at less client CPU
# (docs/decisions.md, "Performance: submit and wait in one request").
_REMEMBER = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""


class IdempotencyKeyReused(ValidationFailed):
    """The Idempotency-Key was used before with another request body."""

    type = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            {
                "Idempotency-Key": [
                    "was used before with a different request body; use a new key for a new request"
                ]
            },
            "the Idempotency-Key was used before with a different request body",
        )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def _sha(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


def request_hash(data: dict[str, Any]) -> str:
    """The hash of a whole loaded request body (key order and whitespace do not matter)."""
    return _sha(data)


def identity_hash(
    target: str,
    collectors: list[str],
    options: dict[str, Any],
    *,
    callback_url: str | None = None,
    callback_on: list[str] | None = None,
    callback_artifacts: str | None = None,
) -> str:
    """What a job collects: equal hashes mean equal work (labels do not count)."""
    return _sha(
        {
            "target": target,
            "collectors": sorted(collectors),
            "options": {name: options.get(name) or {} for name in collectors},
            "callback": _callback(callback_url, callback_on, callback_artifacts),
        }
    )


def _callback(url: str | None, on: list[str] | None, artifacts: str | None) -> list[Any] | None:
    if not url:
        return None
    # inline artifacts make another body; links (the default) keep the earlier hashes
    return [url, sorted(on or [])] + (["inline"] if artifacts == "inline" else [])


@dataclass(frozen=True)
class Reusable:
    job_id: str
    kind: str  # IN_FLIGHT | SUCCEEDED


def _iso(moment: datetime) -> str:
    # the store's format (app.jobs.envelope.utcnow): ISO strings of it compare like times
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def find_reusable(
    redis: Redis, keys: RedisKeys, owner: str, identity: str, max_age: int
) -> Reusable | None:
    """The newest in-flight job of `identity`, else the newest that succeeded within
    `max_age` seconds (0: none); None if neither."""
    listed = cast(list[bytes], redis.lrange(keys.reuse(owner, identity), 0, -1))
    ids = [raw.decode() for raw in listed]
    if not ids:
        return None
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(keys.job(job_id), ["status", "finished_at", "owner"])
    rows = cast(list[list[bytes | None]], pipe.execute())
    cutoff = _iso(datetime.now(UTC) - timedelta(seconds=max_age))
    succeeded: str | None = None
    for job_id, (status, finished_at, job_owner) in zip(ids, rows, strict=True):
        if status is None or job_owner is None or job_owner.decode() != owner:
            continue  # expired, or withdrawn after a failed publish
        state = status.decode()
        if state in _ACTIVE:
            return Reusable(job_id, IN_FLIGHT)
        if (
            succeeded is None
            and max_age > 0
            and state == JobStatus.SUCCEEDED
            and finished_at is not None
            and finished_at.decode() >= cutoff
        ):
            succeeded = job_id
    return Reusable(succeeded, SUCCEEDED) if succeeded else None


def remember(
    redis: Redis, keys: RedisKeys, owner: str, identity: str, job_id: str, ttl: int
) -> None:
    """Make `job_id` the newest candidate of `identity` (call right after creating it)."""
    remember_script = redis.register_script(_REMEMBER)
    remember_script(keys=[keys.reuse(owner, identity)], args=[job_id, RECENT - 1, ttl])
