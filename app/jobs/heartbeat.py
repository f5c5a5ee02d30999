"""The heartbeat of running collectors: one thread per process refreshes every watch entry.

The reaper (`app.jobs.reaper`) treats a running collector whose heartbeat lapsed as
lost (killed worker, frozen process) and requeues it. A collector that runs
past the hard time limit stops being kept alive even if its thread still
runs (the thread pool cannot interrupt it), so a hung collector is reaped too.

A worker process runs many collectors at once (a thread pool), so their beats are
batched: one ticker thread per store and interval beats all of them every interval,
in one pipeline (`JobStore.beat_many`), instead of a thread and a round trip per
collector. The start of a run (`JobStore.begin`) sets its first deadline, so a run
shorter than the interval never beats; a run is beaten at most one interval after
it starts, then every interval. The ticker ends itself when no run is left.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from app.jobs.store import JobStore

__all__ = ["heartbeat"]

log = logging.getLogger("collectq.tasks")


@dataclass(eq=False)
class _Run:
    job_id: str
    collector: str
    timeout: float
    give_up: float  # monotonic: past it, the run is no longer kept alive
    gone: threading.Event = field(default_factory=threading.Event)


class _Ticker:
    """Beats the runs registered with it every `interval` seconds, all in one pipeline."""

    def __init__(self, store: JobStore, interval: float) -> None:
        self.store, self.interval = store, interval
        self._runs: set[_Run] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, run: _Run) -> None:
        with self._lock:
            self._runs.add(run)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
                self._thread.start()

    def remove(self, run: _Run) -> None:
        with self._lock:
            self._runs.discard(run)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                if not self._runs:
                    self._thread = None  # the next run starts a new one
                    return
                now = time.monotonic()
                runs = [r for r in self._runs if now < r.give_up]
            if runs:
                self._beat(runs)

    def _beat(self, runs: list[_Run]) -> None:
        try:
            alive = self.store.beat_many([(r.job_id, r.collector, r.timeout) for r in runs])
        except RedisError:  # Redis restarting: the next beat tries again
            log.warning("heartbeat failed", extra={"runs": len(runs)})
            return
        for run, watched in zip(runs, alive, strict=True):
            if not watched:
                run.gone.set()
                self.remove(run)


_tickers: dict[tuple[int, int, float], _Ticker] = {}  # (pid, store, interval) → ticker
_tickers_lock = threading.Lock()


def _ticker(store: JobStore, interval: float) -> _Ticker:
    key = (os.getpid(), id(store), interval)  # a forked child starts its own thread
    with _tickers_lock:
        ticker = _tickers.get(key)
        if ticker is None or ticker.store is not store:
            ticker = _tickers[key] = _Ticker(store, interval)
        return ticker


@contextmanager
def heartbeat(
    store: JobStore,
    job_id: str,
    collector: str,
    *,
    interval: float,
    timeout: float,
    max_runtime: float,
) -> Iterator[threading.Event]:
    """Keep `collector` of `job_id` alive while the block runs.

    Yields an event that is set when the collector is no longer watched
    (cancelled, expired, or finished by another delivery).
    """
    run = _Run(job_id, collector, timeout, time.monotonic() + max_runtime)
    ticker = _ticker(store, interval)
    ticker.add(run)
    try:
        yield run.gone
    finally:
        ticker.remove(run)
