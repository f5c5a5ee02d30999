"""Celery beat's scheduler: redbeat (entries in Redis, one active beat), made to survive
broker and Redis restarts.

redbeat keeps every entry — the reaper's static tick and each schedule's — in Redis, so
the API adds, changes and deletes schedules at runtime, and a lock lets exactly one beat
fire: another `collectq beat` waits as a standby and takes the lock when the active one
stops renewing it (it died), within `BEAT_LOCK_TIMEOUT` + `BEAT_MAX_INTERVAL`.

Celery's scheduler keeps one broker connection and one producer for its whole
life and, with publish retries off (``task_publish_retry``: the API answers 503
rather than block), never revives them: after RabbitMQ restarts, every tick
fails with "Server unexpectedly closed connection" until beat itself restarts
(celery/celery#3409, #4635). The reaper's ticks stop with it, so a job that
needed the reaper would wait forever. Here a tick that fails drops the connection
and producer; the next tick opens new ones. A tick that cannot reach Redis is
retried after a short pause instead of ending beat, and a lock lost meanwhile (its
time ran out) is waited for again, as a standby.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery.beat import ScheduleEntry
from redbeat.schedulers import RedBeatScheduler, get_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.jobs.names import SCHEDULE_FIRE_TASK
from app.schedules.entries import Entry

__all__ = ["ReconnectingMixin", "Scheduler"]

log = logging.getLogger("collectq.beat")

# seconds before a tick that could not reach Redis is tried again
REDIS_RETRY = 1.0


class ReconnectingMixin:
    """Drop the scheduler's cached connection and producer after a failed send."""

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        try:
            return super().apply_async(  # type: ignore[misc]
                entry, producer=producer, advance=advance, **kwargs
            )
        except Exception:
            self.reset_connection()
            raise

    def reset_connection(self) -> None:
        # `producer` and `connection` are cached properties: popping them from the
        # instance dict makes the next access build fresh ones. redbeat caches the
        # producer once more in `_maybe_due_kwargs`.
        self.__dict__.pop("_maybe_due_kwargs", None)
        self.__dict__.pop("producer", None)
        connection = self.__dict__.pop("connection", None)
        if connection is not None:
            try:
                connection.collect()  # release the dead socket without talking to it
            except Exception:  # it is being thrown away
                log.debug("beat: discarding the old connection failed", exc_info=True)
        log.warning("beat: send failed, reconnecting to the broker for the next tick")


class Scheduler(ReconnectingMixin, RedBeatScheduler):  # type: ignore[misc]
    """redbeat's scheduler: schedules' ticks carry their due time, jitter delays them."""

    Entry = Entry

    def __init__(self, app: Any, *args: Any, lazy: bool = False, **kwargs: Any) -> None:
        super().__init__(app, *args, lazy=lazy, **kwargs)
        # lazy: the instance celery builds only to print its banner
        if not lazy and self.lock_key and get_redis(self.app).exists(self.lock_key):
            log.warning(
                "beat: standby: another beat holds the lock %s; waiting to take over "
                "(within %ss of its end)",
                self.lock_key,
                self.lock_timeout,
            )

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if entry.task == SCHEDULE_FIRE_TASK and isinstance(entry, Entry):
            # before reserve() moves last_run_at: the tick's own due time, the same for
            # every beat that might send it (the fire task fires one tick once)
            due = entry.scheduled_at
            jitter = float(entry.kwargs.get("jitter") or 0)
            entry.kwargs = {**entry.kwargs, "due": due.timestamp() if due else None}
            if jitter > 0:
                entry.options = {**entry.options, "countdown": random.uniform(0, jitter)}  # noqa: S311
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return float(super().tick(*args, **kwargs))
        except LockError:
            log.warning("beat: lost the lock %s; standby until it is free", self.lock_key)
            self.lock.acquire()
            log.info("beat: Acquired lock")
            return 0.0
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("beat: Redis unreachable (%s); next tick in %ss", exc, REDIS_RETRY)
            return REDIS_RETRY
