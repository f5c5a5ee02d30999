"""An optional cap on one collector's concurrent calls per target host, across all workers
(Redis); the cap is the collector's policy (`host_concurrency`).

Each call holds a slot: a member of ``{prefix}hc:{collector}:{host}`` (a sorted set) scored
by the time it expires, so a slot of a killed worker frees itself. A call that
finds the host full waits for a slot (bounded), then gives up with `HostBusy`
(retryable: the task retries it later with backoff).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

from redis import Redis

from app.jobs.errors import HostBusy
from app.rediskeys import RedisKeys

__all__ = ["HostSlots"]

# KEYS slots. ARGV: now, expires at, token, cap. Returns 1 if the slot was taken.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(ARGV[2]) * 1000) + 1000)
return 1
"""


class HostSlots:
    def __init__(self, redis: Callable[[], Redis], prefix: str) -> None:
        self._redis = redis  # a callable: the client is created lazily, after fork
        self._keys = RedisKeys(prefix)

    @contextmanager
    def slot(
        self, collector: str, host: str, *, cap: int, hold_max: float, wait_max: float
    ) -> Iterator[HostBusy | None]:
        """Hold one of `collector`'s `cap` slots at `host` for the block (`cap` 0: no cap);
        yields HostBusy if none came free within `wait_max` seconds."""
        if cap <= 0 or not host:
            yield None
            return
        redis, key = self._redis(), self._keys.host_slots(collector, host)
        token = uuid.uuid4().hex
        acquire = redis.register_script(_ACQUIRE)
        deadline, pause = time.monotonic() + wait_max, 0.05
        while True:
            now = time.time()
            if cast(int, acquire(keys=[key], args=[now, now + hold_max, token, cap])):
                break
            if time.monotonic() >= deadline:
                yield HostBusy(
                    f"{host} already has {cap} {collector} calls in flight", retry_after=1.0
                )
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        try:
            yield None
        finally:
            redis.zrem(key, token)
