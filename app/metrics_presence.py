"""Worker presence: which worker nodes are online for each queue (`collectq_workers_online`).

Each worker node keeps one member ``{queue}|{node}`` per queue it consumes in the zset
``{prefix}workers`` (`RedisKeys.workers_online`), scored by when it lapses, and refreshes
it every `PRESENCE_INTERVAL` seconds from a thread of its main process. A node that dies
without saying goodbye drops out after `PRESENCE_TTL`. Read at scrape time by the API's
metrics listener (no broadcast to the workers, unlike `celery inspect`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import cast

from redis import Redis
from redis.exceptions import RedisError

from app.rediskeys import RedisKeys

__all__ = ["PRESENCE_INTERVAL", "PRESENCE_TTL", "Presence", "online_per_queue"]

log = logging.getLogger("collectq.metrics")

PRESENCE_INTERVAL = 10.0
PRESENCE_TTL = 3 * PRESENCE_INTERVAL
_SEPARATOR = "|"  # queue names have none


def online_per_queue(redis: Redis, keys: RedisKeys, now: float | None = None) -> dict[str, int]:
    """Worker nodes online per queue (lapsed members are dropped on the way)."""
    now = time.time() if now is None else now
    pipe = redis.pipeline(transaction=False)
    pipe.zremrangebyscore(keys.workers_online, "-inf", now)
    pipe.zrange(keys.workers_online, 0, -1)
    members = cast(list[bytes], pipe.execute()[1])
    counts: dict[str, int] = {}
    for member in members:
        queue = member.decode().partition(_SEPARATOR)[0]
        counts[queue] = counts.get(queue, 0) + 1
    return counts


class Presence:
    """One worker node's presence, refreshed by a daemon thread until `stop`."""

    def __init__(self, redis: Redis, keys: RedisKeys, node: str, queues: Iterable[str]) -> None:
        self._redis, self._key = redis, keys.workers_online
        self._members = [f"{q}{_SEPARATOR}{node}" for q in queues]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="collectq-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def refresh(self) -> None:
        lapse = time.time() + PRESENCE_TTL
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._key, dict.fromkeys(self._members, lapse))
        pipe.expire(self._key, int(PRESENCE_TTL) + 1)  # gone with the last node
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except RedisError as exc:  # Redis away: the node looks offline until it is back
                log.warning("worker presence not refreshed: %s", exc)
            self._stop.wait(PRESENCE_INTERVAL)

    def stop(self) -> None:
        """Say goodbye (a clean shutdown is not `PRESENCE_TTL` of a ghost)."""
        self._stop.set()
        with contextlib.suppress(RedisError):  # else it lapses by itself
            self._redis.zrem(self._key, *self._members)
