"""Publisher confirms amortised across an API process's concurrent submits.

A submit is answered 202 only after the broker confirmed its messages (docs/architecture.md,
"Reliability"). Waiting for one confirm per request means each request thread holds a pooled
connection and blocks on its own round trip. Here one thread per process owns one
connection whose channel is in confirm mode: request threads hand it their messages and wait;
it publishes everything that has accumulated, then waits for the broker's acks of the whole
batch together (RabbitMQ acknowledges many delivery tags with one ``multiple`` ack) and wakes
each request with its outcome. The messages are built by Celery (`send_task`, so its signals,
routing and tracing headers are the same as before) in the request's own context
(`contextvars`: its trace and log fields).

Still: a request returns only when every one of its messages was confirmed. A nack or no
confirm within `timeout` fails the requests of that batch (the caller withdraws their jobs
and answers 503). A connection the broker closed (a restart between two submits) is found
before the batch is sent; one lost during a batch is replaced once and the unconfirmed
messages sent again (what Celery's `retry_policy` of one retry did): a message that arrived
twice is a redelivery, which the store records once.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu import Connection, Producer

__all__ = ["ConfirmingPublisher", "MessageNacked"]

log = logging.getLogger("collectq.publisher")

# Idle this long, the thread lets the connection send/check heartbeats.
_IDLE = 2.0
# At most this many requests share one confirm wait (bounds one batch's latency).
BATCH_MAX = 64


class MessageNacked(Exception):
    """The broker refused a message (a nack): it was not stored."""


class _Request:
    __slots__ = ("context", "done", "error", "first", "last", "send")

    def __init__(self, send: Callable[[Producer], None]) -> None:
        self.send = send
        self.context = contextvars.copy_context()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.first = self.last = 0  # its delivery tags: first..last (none if last < first)


class ConfirmingPublisher:
    """One confirm-mode channel per process, shared by every request thread."""

    def __init__(self, celery: Celery, *, timeout: float, errors: tuple[type[BaseException], ...]):
        self._celery = celery
        self._timeout = timeout
        self._errors = errors  # what a broken connection raises (app.jobs.broker.PUBLISH_ERRORS)
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._sent = 0  # delivery tags given on the current channel
        self._acked = 0  # every tag up to this one is confirmed
        self._acked_single: set[int] = set()
        self._nacked: set[int] = set()

    # request threads -----------------------------------------------------------------------
    def publish(self, send: Callable[[Producer], None]) -> None:
        """Run `send(producer)` on the shared channel (it publishes one or more messages);
        return once the broker confirmed them all, else raise (one of `errors`, or
        MessageNacked)."""
        self._start()
        request = _Request(send)
        self._queue.put(request)
        # the thread gives up on a batch after `timeout`; this is a backstop if it died
        if not request.done.wait(self._timeout * 2 + 5):
            raise TimeoutError("the publisher thread did not answer")
        if request.error is not None:
            raise request.error

    def _start(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # a forked child: the parent's thread and connection are not ours
            self._queue = queue.SimpleQueue()
            self._conn = self._producer = None
            threading.Thread(target=self._run, name="collectq-publisher", daemon=True).start()
            self._pid = os.getpid()

    # the publisher thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=_IDLE)
            except queue.Empty:
                self._idle()
                continue
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._publish(batch)
            except BaseException as exc:
                log.exception("publisher: batch failed unexpectedly")
                self._fail(batch, exc)

    def _publish(self, batch: list[_Request]) -> None:
        pending = batch
        for attempt in (1, 2):
            try:
                producer = self._channel()
                self._check_alive()
                self._send(pending, producer)
                self._await(pending)
                return
            except self._errors as exc:
                self._drop()
                pending = [r for r in pending if not r.done.is_set()]
                # A lost connection: send what is unconfirmed once more on a new one (a
                # message that did arrive twice is one job's redelivery, which the store
                # records once). No confirm in time: the broker is stuck, the caller answers.
                if attempt == 1 and pending and not isinstance(exc, TimeoutError):
                    log.info("publisher: broker connection lost, sending again on a new one")
                    continue
                self._fail(pending, exc)
                return

    def _check_alive(self) -> None:
        """Read what the broker sent since the last batch: a connection it closed (a
        restart, a heartbeat timeout) raises here, before anything is sent on it."""
        assert self._conn is not None  # noqa: S101 - _channel() made it
        with contextlib.suppress(TimeoutError):  # nothing to read: the connection is alive
            self._conn.drain_events(timeout=0)

    def _send(self, batch: list[_Request], producer: Producer) -> None:
        for request in batch:
            request.first = self._sent + 1
            request.last = self._sent
            if request.error is not None:  # refused on an earlier try: sent nothing
                continue
            try:
                request.context.run(request.send, producer)
            except self._errors:
                request.last = self._sent
                raise
            except Exception as exc:
                request.error = exc
            request.last = self._sent

    def _await(self, batch: list[_Request]) -> None:
        """Wait for the broker's verdict on every message of the batch; wake each request."""
        assert self._conn is not None  # noqa: S101 - _channel() made it
        deadline = time.monotonic() + self._timeout
        waiting = list(batch)
        while True:
            waiting = [r for r in waiting if not self._settle(r)]
            if not waiting:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no publisher confirm within {self._timeout} s")
            self._conn.drain_events(timeout=remaining)

    def _settle(self, request: _Request) -> bool:
        """Wake `request` if the broker has decided on all of its messages."""
        tags = range(request.first, request.last + 1)
        if any(t in self._nacked for t in tags):
            request.error = request.error or MessageNacked("the broker refused a message")
        elif not all(t <= self._acked or t in self._acked_single for t in tags):
            return False
        request.done.set()
        return True

    def _fail(self, batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            request.error = request.error or exc
            request.done.set()

    # the connection ------------------------------------------------------------------------
    def _channel(self) -> Producer:
        if self._producer is not None:
            return self._producer
        # the app's broker settings, but confirms handled here instead of per publish
        conn = self._celery.connection_for_write(transport_options={"confirm_publish": False})
        conn.ensure_connection(max_retries=1)
        channel: Any = conn.channel()
        channel.confirm_select()
        raw_publish = channel.basic_publish

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._sent += 1  # the broker numbers a channel's messages 1, 2, … the same way
            return raw_publish(*args, **kwargs)

        channel.basic_publish = counted
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._conn, self._producer = conn, Producer(channel, auto_declare=False)
        self._sent = self._acked = 0
        self._acked_single.clear()
        self._nacked.clear()
        return self._producer

    def _on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._acked = max(self._acked, tag)
            self._acked_single = {t for t in self._acked_single if t > self._acked}
        else:
            self._acked_single.add(tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        tags = range(self._acked + 1, tag + 1) if multiple else (tag,)
        self._nacked.update(t for t in tags if t not in self._acked_single)

    def _idle(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.heartbeat_check()
        except self._errors:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:
                log.debug("publisher: closing a broken connection failed", exc_info=True)
