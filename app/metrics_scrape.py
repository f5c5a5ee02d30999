"""Gauges computed when the API's metrics listener is scraped, from Redis and the broker.

They describe the deployment, not one process, so they are read fresh at each scrape
(never stored in multiprocess files): every API replica reports the same values, and
dashboards aggregate them with `max`. A dependency that does not answer leaves its
gauges out of that scrape (and `collectq_dependency_up` says 0), never a stale value.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import time
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

from celery import Celery
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

import celeryconfig
from app.auth.apikeys import ApiKey, KeyNotice, KeyStore
from app.jobs.breaker import Breakers, breaker_collector
from app.jobs.broker import PUBLISH_ERRORS, queue_depths
from app.jobs.health import broker_ok
from app.jobs.names import MAINTENANCE_QUEUE, collector_queue
from app.metrics_presence import online_per_queue
from app.redisclient import redis_client
from app.rediskeys import RedisKeys
from app.runtime import breakers_of, load_collectors
from app.schedules.store import ScheduleStore
from app.settings import Settings

__all__ = ["BREAKER_BUCKETS", "ScrapeCollector", "breaker_bucket"]

log = logging.getLogger("collectq.metrics")

# Breakers are per target origin: an unbounded set, and a target name must not become a
# label. They are counted in 16 buckets of sha256(origin): bounded, and an operator who
# knows an origin can find its bucket (docs/decisions.md, "hashed buckets").
BREAKER_BUCKETS = 16
BREAKER_STATES_MAX = 10_000  # origins read per scrape (the most recently used)


def breaker_bucket(origin: str) -> str:
    """The bucket label of a breaker's origin: sha256 mod 16, as "00".."15"."""
    digest = hashlib.sha256(origin.encode()).digest()
    return f"{int.from_bytes(digest, 'big') % BREAKER_BUCKETS:02d}"


class ScrapeCollector(Collector):
    """The deployment's gauges: queue depths, workers online, breakers, dependencies,
    the beat's last tick and the build. Clients are created once, lazily, in the
    process that scrapes (the gunicorn master, after it started)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sources: tuple[Redis, Breakers, Celery, list[str]] | None = None

    def _wired(self) -> tuple[Redis, Breakers, Celery, list[str]]:
        if self._sources is None:
            s = self.settings
            names = load_collectors(s).available_names()
            celery = Celery("collectq-metrics", set_as_current=False)
            celery.config_from_object(celeryconfig.build(s, names))
            breakers = breakers_of(s)
            queues = [collector_queue(n) for n in names] + [MAINTENANCE_QUEUE]
            self._sources = (redis_client(s.redis_url, read_timeout=2.0), breakers, celery, queues)
        return self._sources

    def reconfigure(self, settings: Settings) -> None:
        """Scrape with `settings` from now on (a reload: a rotated Redis or broker
        password); the clients built from the old ones are closed, new ones made lazily."""
        sources, self._sources, self.settings = self._sources, None, settings
        if sources is not None:
            redis, breakers, celery, _ = sources
            redis.close()
            breakers.redis.close()
            celery.close()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        redis, breakers, celery, queues = self._wired()
        keys = RedisKeys(self.settings.redis_prefix)
        build = GaugeMetricFamily(
            "collectq_build_info", "the running build", labels=["version", "env"]
        )
        build.add_metric([version("collectq"), self.settings.env], 1)
        yield build
        up = GaugeMetricFamily(
            "collectq_dependency_up", "1 if the dependency answered", labels=["dependency"]
        )
        broker_up = self._broker_up(celery)
        redis_up = self._redis_up(redis)
        up.add_metric(["broker"], broker_up)
        up.add_metric(["redis"], redis_up)
        yield up
        if broker_up:
            yield from self._queue_depths(celery, queues)
        if redis_up:
            yield from self._from_redis(redis, keys, breakers, queues)

    def _broker_up(self, celery: Celery) -> int:
        ok, _ = broker_ok(celery, min(2.0, self.settings.publish_timeout))
        return int(ok)

    @staticmethod
    def _redis_up(redis: Redis) -> int:
        try:
            redis.ping()
        except RedisError:
            return 0
        return 1

    @staticmethod
    def _queue_depths(celery: Celery, queues: list[str]) -> Iterator[GaugeMetricFamily]:
        try:
            depths = queue_depths(celery, queues)
        except PUBLISH_ERRORS as exc:
            log.warning("queue depths not read: %s", exc)
            return
        family = GaugeMetricFamily(
            "collectq_queue_depth", "ready messages in the queue", labels=["queue"]
        )
        for queue, depth in depths.items():
            if depth is not None:  # RabbitMQ: a queue no worker declared yet
                family.add_metric([queue], depth)
        yield family

    def _from_redis(
        self, redis: Redis, keys: RedisKeys, breakers: Breakers, queues: list[str]
    ) -> Iterator[GaugeMetricFamily]:
        try:
            online = online_per_queue(redis, keys)
            states = breakers.states(limit=BREAKER_STATES_MAX)
            tick = redis.get(keys.beat_last_tick)
            schedules = ScheduleStore(redis, keys).counts()
            flagged = KeyStore(redis, self.settings.redis_prefix).flagged(
                time.time(), self.settings.key_expiry_warning
            )
        except RedisError as exc:
            log.warning("redis gauges not read: %s", exc)
            return
        workers = GaugeMetricFamily(
            "collectq_workers_online", "worker nodes consuming the queue", labels=["queue"]
        )
        for queue in sorted(set(queues) | set(online)):
            workers.add_metric([queue], online.get(queue, 0))
        yield workers
        yield from self._breakers(states)
        family = GaugeMetricFamily(
            "collectq_schedules", "schedules stored, by state (active, paused)", labels=["state"]
        )
        total, paused = schedules
        family.add_metric(["active"], max(0, total - paused))
        family.add_metric(["paused"], paused)
        yield family
        yield self._flagged_keys(flagged)
        if tick is not None:
            yield GaugeMetricFamily(
                "collectq_beat_last_tick_timestamp_seconds",
                "unix time of the last maintenance.reap run (beat's last tick)",
                value=float(tick),
            )

    @staticmethod
    def _flagged_keys(flagged: list[tuple[ApiKey, KeyNotice]]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "collectq_api_keys_flagged",
            "API keys to replace soon: within KEY_EXPIRY_WARNING of expiry (expiring) or "
            "past their rotation period (rotation_due); keys already rotated not counted",
            labels=["reason"],
        )
        counts = dict.fromkeys(("expiring", "rotation_due"), 0)
        for key, notice in flagged:
            if key.rotated_to is None:
                counts[notice.reason] += 1
        for reason, n in counts.items():
            family.add_metric([reason], n)
        return family

    def _breakers(self, states: dict[str, dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        counts: dict[tuple[str, str], int] = {}
        longest: dict[str, float] = {}
        for origin, info in states.items():
            if info.get("state", "closed") == "closed":
                continue  # open or half-open: not taking ordinary calls
            kind = breaker_collector(origin)
            key = (kind, breaker_bucket(origin))
            counts[key] = counts.get(key, 0) + 1
            half_open_at = info.get("half_open_at")
            if half_open_at:
                reset = self.settings.policy_for(kind).breaker_reset_timeout
                opened = _epoch(half_open_at) - reset
                longest[kind] = max(longest.get(kind, 0.0), now - opened)
        opened_family = GaugeMetricFamily(
            "collectq_breakers_open",
            "open circuit breakers, in hashed buckets of their origin",
            labels=["collector", "bucket"],
        )
        for (kind, bucket), n in sorted(counts.items()):
            opened_family.add_metric([kind, bucket], n)
        yield opened_family
        longest_family = GaugeMetricFamily(
            "collectq_breaker_open_seconds_max",
            "how long the longest currently open breaker has been open",
            labels=["collector"],
        )
        for kind in ("http", "screenshot", "tls", "dns"):
            longest_family.add_metric([kind], max(0.0, longest.get(kind, 0.0)))
        yield longest_family


def _epoch(iso: str) -> float:
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))
