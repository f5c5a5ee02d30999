"""One reader of the all-jobs event stream per API process, fanned out to its waiting clients.

Every event stream (SSE) and every `?wait=` long-poll of a process subscribes here: by
job id, by owner, or to everything (an admin's ``/v1/events``). The hub's one thread (a
greenlet under gunicorn's gevent worker) blocks in ``XREAD`` on ``p ev-all`` over ONE
Redis connection of its own and hands the entries to the matching subscriptions in batches (`TICK`);
500 streams are 500 queues in memory, not 500 Redis connections (docs/decisions.md,
"Live events").

Nothing is missed between "read the history" and "live": a subscription is registered
first and the hub's position fixed before it returns, so an event newer than that position
arrives in the queue and an older one is in the history the caller reads next (duplicates
are dropped by id: every stream shares the all-jobs stream's ids, `app.jobs.events`).

The reader runs only while subscriptions exist: `LINGER` s after the last one left it stops
(within `BLOCK_MS` more), and the next subscription starts it again from the stream's end, so
a process nobody waits on neither reads nor parses every job's events.

A subscription whose client reads too slowly (its queue full) is closed: its stream ends
and the client resumes with ``Last-Event-ID``. Redis unreachable: the hub retries with
backoff and resumes from its position (the stream kept the entries).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError

from app.jobs.backoff import backoff_delay
from app.jobs.events import Event, parse_entry

__all__ = ["EventHub", "Subscription", "hub_for", "shut_down"]

log = logging.getLogger(__name__)

BLOCK_MS = 2000  # one XREAD waits this long at most (then the loop looks again)
BATCH = 2000  # entries per XREAD
QUEUE_MAX = 1000  # events buffered per subscription before it is closed as too slow
# s: after a delivery the hub waits this long before the next read, so a busy stream is
# read in batches (at most 1/TICK reads a second) while a waiter hears its job's end within
# a few ms. Event streams (SSE) coalesce their own writes over a longer period
# (`app.events.sse.WRITE_EVERY`): a long-poll is not held back for a stream's sake.
TICK = 0.005
# s: the reader stops after this long with no subscription (a client between two waits
# does not restart it each time)
LINGER = 10.0


@dataclass(eq=False)
class Subscription:
    """A client's share of the hub: events of one job, one owner, or all (both None).

    The hub appends batches; the client takes everything pending at once (one wake-up per
    batch, not per event). A deque and an Event, not a queue.Queue: under gevent they are
    a fraction of a Queue's lock and condition work, and 500 streams take every batch."""

    job_id: str | None
    owner: str | None
    _pending: deque[Event] = field(default_factory=deque)
    _ready: threading.Event = field(default_factory=threading.Event)
    closed: bool = False  # too slow a reader, or the process is shutting down

    def offer(self, events: list[Event]) -> None:
        if self.closed:
            return
        if len(self._pending) + len(events) > QUEUE_MAX:
            self.close()  # the reader ends the stream; the client resumes
            return
        self._pending.extend(events)
        self._ready.set()

    def close(self) -> None:
        """Wake the reader with nothing: its stream ends (a waiter answers what it has)."""
        self.closed = True
        self._pending.clear()
        self._ready.set()

    def take(self, timeout: float) -> list[Event]:
        """Every pending event, oldest first, waiting up to `timeout` s for one; [] when
        the time is up or the subscription is closed."""
        end = time.monotonic() + timeout
        while not self.closed:
            if self._pending:
                self._ready.clear()
                out: list[Event] = []
                while self._pending:  # popleft, not a swap: an offer may run meanwhile
                    out.append(self._pending.popleft())
                return out
            left = end - time.monotonic()
            if left <= 0:
                return []
            self._ready.wait(left)
            self._ready.clear()  # a stale wake-up costs one more look, never an event
        return []


class EventHub:
    """Fan-out of ``p ev-all`` to subscriptions; its reader runs while any exists (and
    `LINGER` s after)."""

    def __init__(
        self, client: Callable[[], Redis], all_key: str, *, linger: float = LINGER
    ) -> None:
        self._client = client
        self.all_key = all_key
        self._linger = linger
        self._idle_since: float | None = None
        self._lock = threading.Lock()
        self._by_job: dict[str, set[Subscription]] = {}
        self._by_owner: dict[str, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._position: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def reading(self) -> bool:
        """Whether the reader runs (it stops `linger` + up to BLOCK_MS after the last
        subscription left)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def subscriptions(self) -> int:
        with self._lock:
            return (
                sum(len(s) for s in self._by_job.values())
                + sum(len(s) for s in self._by_owner.values())
                + len(self._everything)
            )

    @contextmanager
    def subscribe(
        self, *, job_id: str | None = None, owner: str | None = None
    ) -> Iterator[Subscription]:
        """A subscription for the block: a job's events, an owner's, or all (neither given)."""
        sub = Subscription(job_id, owner)
        with self._lock:  # the reader stops only under this lock, seeing no subscription
            self._start()
            self._slot(sub).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                group = self._slot(sub)
                group.discard(sub)
                if not group and group is not self._everything:
                    key = job_id if job_id is not None else owner
                    (self._by_job if job_id is not None else self._by_owner).pop(cast(str, key))

    def _slot(self, sub: Subscription) -> set[Subscription]:
        if sub.job_id is not None:
            return self._by_job.setdefault(sub.job_id, set())
        if sub.owner is not None:
            return self._by_owner.setdefault(sub.owner, set())
        return self._everything

    def _start(self) -> None:
        """Unless it runs: fix the position (the stream's last id) and start the reader.
        Called with the lock held, before the caller's subscription is added."""
        if self._thread is not None and self._thread.is_alive():
            return
        last = cast(list[Any], self._client().xrevrange(self.all_key, count=1))
        self._position = last[0][0].decode() if last else "0-0"
        self._thread = threading.Thread(target=self._run, name="event-hub", daemon=True)
        self._thread.start()

    def _unwanted(self) -> bool:
        """No subscription for `linger` s: the reader stops (the next subscription starts
        another, from the stream's end then). A process nobody waits on reads nothing."""
        with self._lock:
            if self._by_job or self._by_owner or self._everything:
                self._idle_since = None
                return False
            now = time.monotonic()
            if self._idle_since is None:
                self._idle_since = now
            if now - self._idle_since < self._linger:
                return False
            self._thread = self._idle_since = None
            return True

    def _run(self) -> None:
        failures = 0
        while not self._unwanted():
            if _SHUTTING_DOWN:
                self.close_all()
            try:
                events = self._read()
                self.dispatch(events)
                failures = 0
                if events:
                    time.sleep(TICK)  # what arrives meanwhile goes out as one batch
            except RedisError as exc:
                failures += 1
                delay = backoff_delay(failures, base=0.2, cap=5.0)
                log.warning("event hub: Redis read failed, retrying", extra={"error": str(exc)})
                time.sleep(delay)

    def _read(self) -> list[Event]:
        position = cast(str, self._position)
        reply = cast(
            list[Any],
            self._client().xread({self.all_key: position}, count=BATCH, block=BLOCK_MS),
        )
        events = [parse_entry(eid, fields) for _, entries in reply for eid, fields in entries]
        if events:
            self._position = events[-1].id
        return events

    def close_all(self) -> None:
        with self._lock:
            subs = [*self._everything, *(s for g in self._by_job.values() for s in g)]
            subs += [s for g in self._by_owner.values() for s in g]
        for sub in subs:
            sub.close()

    def dispatch(self, events: list[Event]) -> None:
        """Hand each subscription the events it matches, as one batch (the reader's step)."""
        batches: dict[Subscription, list[Event]] = {}
        with self._lock:
            for event in events:
                for sub in chain(
                    self._by_job.get(event.job_id, ()),
                    self._by_owner.get(event.owner, ()),
                    self._everything,
                ):
                    batches.setdefault(sub, []).append(event)
        for sub, batch in batches.items():
            sub.offer(batch)


_SHUTTING_DOWN = False
_HUBS: dict[tuple[int, str, str], EventHub] = {}
_HUBS_LOCK = threading.Lock()


def hub_for(redis_url: str, all_key: str) -> EventHub:
    """This process's hub for a Redis and key prefix (a forked child gets its own)."""
    key = (os.getpid(), redis_url, all_key)
    with _HUBS_LOCK:
        hub = _HUBS.get(key)
        if hub is None:
            conn: list[Redis] = []

            def client() -> Redis:  # its own connection: XREAD blocks up to BLOCK_MS
                if not conn:
                    from app.redisclient import redis_client

                    conn.append(redis_client(redis_url, read_timeout=BLOCK_MS / 1000 + 5))
                return conn[0]

            hub = _HUBS[key] = EventHub(client, all_key)
        return hub


def shut_down() -> None:
    """The process is stopping (a signal handler may call this: it only sets a flag): the
    hub closes every subscription after its current read (within BLOCK_MS), so open
    streams end and their clients reconnect elsewhere with Last-Event-ID, instead of
    holding the worker until gunicorn's graceful timeout."""
    global _SHUTTING_DOWN
    _SHUTTING_DOWN = True
