"""Server-sent events of jobs, framework-free: history from a stream, then live from the hub.

A body is an iterable of bytes a WSGI server writes as it comes (``text/event-stream``):

    retry: 3000                        how long a client waits before reconnecting
    id: 1796019207655-1                the stream id (``Last-Event-ID`` resumes after it)
    event: state | done
    data: {"job_id": …, "collector": …, "status": …, "attempt": …, "at": …}

plus a ``: keep-alive`` comment every few seconds of silence (proxies keep the connection,
a vanished client is noticed at the next write). A job's stream ends after its ``done``
event; an owner's stream ends after its maximum life (the client reconnects and resumes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from functools import lru_cache
from typing import Any, cast

from redis import Redis

from app.events.hub import Subscription
from app.jobs.events import Event, parse_entry, stream_id_key

__all__ = ["KEEPALIVE", "SseBody", "format_event", "history", "valid_event_id"]

KEEPALIVE = b": keep-alive\n\n"
# s: a stream writes at most once per this period; what arrives meanwhile (a job's
# running, succeeded and done) goes out as ONE chunk and one write. A lone event goes out at
# once. (The hub itself delivers within ms, for long-polls: `app.events.hub.TICK`.)
WRITE_EVERY = 0.05
RETRY_MS = 3000
HISTORY_MAX = 5000  # entries sent from the past at most (a job's stream is far shorter)


def valid_event_id(value: str | None) -> str | None:
    """A ``Last-Event-ID`` that is a stream id (``ms-seq``), else None (start afresh)."""
    if value and stream_id_key(value) != (-1, -1) and value.count("-") == 1:
        return value
    return None


def history(redis: Redis, key: str, after: str | None) -> list[Event]:
    """Entries of stream `key` after id `after` (all when None), oldest first, bounded."""
    out: list[Event] = []
    lower = f"({after}" if after else "-"
    while len(out) < HISTORY_MAX:
        batch = cast(list[Any], redis.xrange(key, min=lower, max="+", count=500))
        if not batch:
            break
        out.extend(parse_entry(eid, fields) for eid, fields in batch)
        lower = f"({out[-1].id}"
    return out


@lru_cache(maxsize=4096)
def format_event(event: Event) -> bytes:
    """An event's frame; cached, as the hub hands one event to many streams."""
    data = json.dumps(event.data(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def _done(job_id: str, status: str) -> bytes:
    """A `done` with no id: the job ended before its events were kept (or they expired)."""
    data = json.dumps({"job_id": job_id, "status": status}, separators=(",", ":"))
    return f"event: done\ndata: {data}\n\n".encode()


class SseBody:
    """The response body of one stream. `resources` (the hub subscription, the wait slot,
    the open-streams gauge) are released by `close`, which the WSGI server calls when the
    stream ends or the client goes away (also when the body was never iterated)."""

    def __init__(
        self,
        sub: Subscription,
        past: list[Event],
        resources: ExitStack,
        *,
        keepalive: float,
        max_life: float,
        job_id: str | None = None,
        final_status: Callable[[], str | None] | None = None,
    ) -> None:
        self._sub = sub
        self._past = past
        self._resources = resources
        self._keepalive = keepalive
        self._max_life = max_life
        self._job_id = job_id
        self._final_status = final_status
        self._last = (-1, -1)
        self._gen = self._events()

    def __iter__(self) -> Iterator[bytes]:
        return self._gen

    def close(self) -> None:
        try:
            self._gen.close()
        finally:
            self._resources.close()

    def _send(self, event: Event) -> bytes | None:
        """The event's frame, or None if it was sent already (history and live overlap)."""
        key = stream_id_key(event.id)
        if key <= self._last:
            return None
        self._last = key
        return format_event(event)

    def _ends(self, event: Event) -> bool:
        return self._job_id is not None and event.final

    def _events(self) -> Generator[bytes, None, None]:
        yield f"retry: {RETRY_MS}\n\n".encode()
        for event in self._past:
            yield format_event(event)
            self._last = stream_id_key(event.id)
            if self._ends(event):
                return
        if self._job_id is not None and self._final_status is not None:
            status = self._final_status()
            if status is not None:  # final already: its `done` is queued, or was never kept
                yield from self._drain(self._job_id, status)
                return
        yield from self._live()

    def _frames(self, events: list[Event]) -> tuple[bytes, bool]:
        """One chunk for a batch (one write), and whether the stream ends with it."""
        frames: list[bytes] = []
        for event in events:
            frame = self._send(event)
            if frame is not None:
                frames.append(frame)
            if self._ends(event):
                return b"".join(frames), True
        return b"".join(frames), False

    def _drain(self, job_id: str, status: str) -> Iterator[bytes]:
        """What the hub queued for a job that is final, then its `done`."""
        chunk, ended = self._frames(self._sub.take(0))
        if chunk:
            yield chunk
        if not ended:
            yield _done(job_id, status)

    def _live(self) -> Iterator[bytes]:
        end = time.monotonic() + self._max_life
        last_write = 0.0
        while (left := end - time.monotonic()) > 0:
            events = self._sub.take(min(self._keepalive, left))
            if self._sub.closed:
                return  # too slow a reader, or shutting down: the client resumes
            if not events:
                yield KEEPALIVE
                continue
            early = last_write + WRITE_EVERY - time.monotonic()
            if early > 0:  # wrote just now: gather what else comes, then write once
                time.sleep(early)
                events += self._sub.take(0)
            chunk, ended = self._frames(events)
            if chunk:
                last_write = time.monotonic()
                yield chunk
            if ended:
                return
