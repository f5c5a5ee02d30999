"""Every few seconds: throughput, queue depths, RSS and open fds per role, Redis size.

A role's RSS and fds are the sums over its process and all of its children (a prefork
pool's children, gunicorn's workers, the screenshot worker's Chromium). The broker's
queue depths come from a prober thread of their own: a frozen broker must not stall the
sampling of everything else (a stale depth is recorded as unknown).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis
from kombu import Connection

from app.jobs.events import ALL_MAXLEN, OWNER_MAXLEN
from app.rediskeys import RedisKeys
from tests.soak.stack import WORKERS, Stack
from tests.soak.tracker import Tracker

__all__ = ["CAPPED_STREAMS", "Sample", "Sampler", "fd_census"]

# Streams bounded by their MAXLEN, not by JOB_TTL (docs/architecture.md, "State in
# Redis"): `ev-all` and the owners' `evo:{owner}`. They grow until full, then stay: the
# retention check counts them apart. Approximate MAXLEN: a stream may exceed it a little.
CAPPED_STREAMS = {"ev-all": ALL_MAXLEN, "evo": OWNER_MAXLEN}


@dataclass
class Sample:
    t: float
    completed: int
    depths: dict[str, int | None]
    rss: dict[str, int]  # role → bytes
    fds: dict[str, int]
    redis_keys: int | None
    redis_memory: int | None  # used_memory
    capped_memory: int | None  # MEMORY USAGE of the capped streams
    capped_len: dict[str, int] = field(default_factory=dict)
    # origin → (state, opened_at): a half-open probe that fails opens it again at once,
    # so the state alone reads "open" throughout; a new opened_at is a new opening
    breakers: dict[str, tuple[str, str]] = field(default_factory=dict)


def role_usage(pids: list[int]) -> tuple[int, int]:
    """(RSS bytes, open fds) of these processes and their descendants."""
    rss = fds = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            top = psutil.Process(pid)
            for proc in [top, *top.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
                    fds += proc.num_fds()
    return rss, fds


def fd_census(pids: list[int], ports: dict[int, str]) -> dict[str, int]:
    """What a role's open fds are: TCP connections by the service they reach (`ports`:
    port → name), listeners, unix sockets, and the rest (files, pipes, epoll)."""
    out: Counter[str] = Counter()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            top = psutil.Process(pid)
            for proc in [top, *top.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    sockets = proc.net_connections(kind="all")
                    for c in sockets:
                        if c.raddr and isinstance(c.raddr, tuple):
                            state = "" if c.status == psutil.CONN_ESTABLISHED else f" {c.status}"
                            out[f"tcp to {ports.get(c.raddr[1], 'other')}{state}"] += 1
                        elif c.status == psutil.CONN_LISTEN:
                            out["listening"] += 1
                        else:
                            out["unix or unconnected"] += 1
                    out["files, pipes, other"] += proc.num_fds() - len(sockets)
    return dict(out)


class DepthProber(threading.Thread):
    """Ready messages per queue, by passive declares on a connection of its own."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(name="depths", daemon=True)
        self.url, self.interval = url, interval
        self.latest: tuple[float, dict[str, int | None]] = (0.0, {})
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            # down or frozen: try again later
            with contextlib.suppress(Exception), Connection(self.url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                while not self.stopped.is_set():
                    self.latest = (time.monotonic(), self._depths(conn))
                    self.stopped.wait(self.interval)
            self.stopped.wait(self.interval)

    @staticmethod
    def _depths(conn: Connection) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        channel: Any = conn.channel()
        for queue in WORKERS:
            try:
                out[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except conn.channel_errors:  # not declared yet: no worker consumed it so far
                out[queue] = None
                channel = conn.channel()
        channel.close()
        return out

    def current(self, max_age: float) -> dict[str, int | None]:
        at, depths = self.latest
        return depths if time.monotonic() - at <= max_age else dict.fromkeys(WORKERS)


class Sampler(threading.Thread):
    def __init__(self, stack: Stack, tracker: Tracker, interval: float) -> None:
        super().__init__(name="sampler", daemon=True)
        self.stack, self.tracker, self.interval = stack, tracker, interval
        self.samples: list[Sample] = []
        self.stopped = threading.Event()
        self.prober = DepthProber(stack.env["COLLECTQ_BROKER_URL"], interval)
        self.keys = RedisKeys(stack.env["COLLECTQ_REDIS_PREFIX"])

    def run(self) -> None:
        self.prober.start()
        while not self.stopped.is_set():
            started = time.monotonic()
            self.tracker.poll()
            self.samples.append(self.sample())
            self.stopped.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stopped.set()
        self.prober.stopped.set()
        self.join()

    def sample(self) -> Sample:
        rss: dict[str, int] = {}
        fds: dict[str, int] = {}
        for role, pids in self.stack.pids().items():
            used, opened = role_usage(pids)
            if used:  # 0: it died between the listing and the reading (a fault)
                rss[role], fds[role] = used, opened
        s = Sample(
            t=self.tracker.now(),
            completed=self.tracker.completed,
            depths=self.prober.current(max_age=3 * self.interval),
            rss=rss,
            fds=fds,
            redis_keys=None,
            redis_memory=None,
            capped_memory=None,
        )
        with contextlib.suppress(redis.RedisError):
            self._redis(s)
        return s

    def _redis(self, s: Sample) -> None:
        client = redis.Redis.from_url(self.stack.redis.url, socket_timeout=2, decode_responses=True)
        try:
            s.redis_keys = int(client.dbsize())
            s.redis_memory = int(client.info("memory")["used_memory"])
            streams = {
                "ev-all": [self.keys.all_events],
                "evo": list(client.scan_iter(f"{self.keys.owner_events_prefix}*", count=1000)),
            }
            capped = 0
            for name, keys in streams.items():
                for key in keys:
                    capped += int(client.memory_usage(key, samples=0) or 0)
                    s.capped_len[name] = max(s.capped_len.get(name, 0), int(client.xlen(key)))
            s.capped_memory = capped
            s.breakers = self._breakers(client)
        finally:
            client.close()

    def _breakers(self, client: Any) -> dict[str, tuple[str, str]]:
        out = {}
        for host in client.zrange(self.keys.breaker_hosts, 0, -1):
            ns = f"{self.keys.breaker_namespace(host)}:pybreaker:"
            state, opened = client.mget([f"{ns}state", f"{ns}opened_at"])
            out[host] = (state or "closed", opened or "")
        return out
