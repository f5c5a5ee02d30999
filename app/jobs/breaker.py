"""Circuit breakers per target origin, their state shared by every worker in Redis.

A breaker is keyed by what failed, not just the host name (`breaker_key`): the
origin ``scheme://host:port`` of a URL (default ports made explicit) for the http
collector, the same prefixed with the collector's name for any other (``screenshot:…``,
a plugin's), ``tls://host:port`` for the tls collector,
``dns://resolver:port/name`` for the dns collector. Each key belongs to one collector
(`breaker_collector`), whose policy sets its thresholds (`breaker_fail_max`,
`breaker_reset_timeout`: ``Settings.policy_for``). So one
tenant's jobs to a filtered port of a shared host cannot open the breaker of the
host's other services (docs/decisions.md, "Hardening: network and collectors").
"Host" below means that key.

pybreaker's `CircuitRedisStorage` holds each key's state under
``{prefix}cb:{key}:pybreaker:*``. The breakers are created lazily, in the
process that uses them (after the worker forked), on a Redis client without
``decode_responses`` (pybreaker decodes itself). pybreaker never expires its
keys: every touch sets a TTL on them, and ``{prefix}cb:hosts`` (host → last
touch) lets `/v1/status` list the breakers and lets old ones be dropped.

Only transient failures (connect errors, timeouts, 429/5xx answers) count;
any other outcome is an answer from the host and closes the count. While a
breaker is open, calls fail fast with `CircuitOpen` (retryable, with the time
the breaker half-opens). Half-open lets one probe through across all workers
(a ``SET NX`` token), not one per worker.

The common case costs one round trip: a call first reads the breaker's state and
failure count and touches ``cb:hosts`` in one pipeline; a breaker that is closed
with no failures counted, whose call ends without a transient failure, has
nothing to record (pybreaker would only reset a count that is already 0), so
pybreaker is not involved. Anything else (a failure to count, an open or
half-open breaker, a count to reset) goes through pybreaker as before. Keys left
untouched then lapse after their TTL, which loses nothing: a missing state is closed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import pybreaker
from redis import Redis
from redis.exceptions import RedisError

from app.jobs.errors import CircuitOpen
from app.redisclient import redis_client
from app.rediskeys import RedisKeys
from collectors.base import CollectorError, Result

__all__ = ["Breakers", "breaker_collector", "breaker_key", "host_of"]

DEFAULT_PORTS = {"http": 80, "https": 443}

Outcome = Result | CollectorError


class _Transient(Exception):
    """Carries a transient outcome through pybreaker, which counts exceptions."""

    def __init__(self, outcome: CollectorError) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


def host_of(target: str) -> str:
    """The host a target points at (URL or bare host name), lower case (the host's
    concurrency cap, `app.jobs.hostcap`; breakers use `breaker_key`)."""
    if "://" in target:
        return (urlsplit(target).hostname or "").lower()
    return urlsplit(f"//{target}").hostname or target.lower()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _port(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _split(target: str, default_scheme: str) -> tuple[str, str, int | None]:
    """(scheme, lower-case host, port or None) of a URL or a bare ``host[:port]``."""
    target = target.strip()
    url = target if "://" in target else f"{default_scheme}://{target}"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a malformed port: the collector refuses the target anyway
        port = None
    host = (parts.hostname or "").lower().rstrip(".")
    return parts.scheme.lower(), host, port


def breaker_key(
    target: str, collector: str = "http", options: Mapping[str, Any] | None = None
) -> str:
    """The breaker a call of `collector` to `target` runs under ("" for none).

    URLs (and bare hosts, taken as https like the collectors do): ``scheme://host:port``.
    tls: ``tls://host:port`` (the ``port`` option wins). dns: the failure is the
    resolver's answer about a name, so ``dns://resolver:port/name`` (``default`` for the
    deployment's resolver).
    """
    options = options or {}
    if collector not in ("http", "tls", "dns"):  # its own thresholds (its policy)
        origin = breaker_key(target, "http", options)
        return f"{collector}:{origin}" if origin else ""
    if collector == "dns":
        return _dns_key(target, options)
    if collector == "tls":
        _, host, port = _split(target, "tls")
        tls_port = _port(options.get("port")) or port or 443
        return f"tls://{_bracketed(host)}:{tls_port}" if host else ""
    scheme, host, port = _split(target, "https")
    url_port = port or DEFAULT_PORTS.get(scheme)
    if not host:
        return ""
    return f"{scheme}://{_bracketed(host)}" + (f":{url_port}" if url_port else "")


def _dns_key(target: str, options: Mapping[str, Any]) -> str:
    _, name, _ = _split(target, "dns")
    server = options.get("nameserver") or "default"
    port = _port(options.get("port")) or 53
    return f"dns://{_bracketed(str(server))}:{port}/{name}" if name else ""


Transition = Callable[[str, str], None]  # (collector, state entered): e.g. a metric


class _Transitions(pybreaker.CircuitBreakerListener):
    """Reports each state change of a breaker under its collector."""

    def __init__(self, report: Transition) -> None:
        self.report = report

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        self.report(breaker_collector(str(cb.name)), str(new_state.name))


def breaker_collector(key: str) -> str:
    """The collector a breaker key belongs to (`breaker_key`): the name before an origin,
    else `tls` or `dns` from the scheme, else `http`."""
    if "://" not in key:
        return "http"
    head, _, rest = key.partition(":")
    if not rest.startswith("//"):
        return head  # `{collector}:{origin}`
    return head if head in ("tls", "dns") else "http"


Limits = Callable[[str], tuple[int, float]]  # collector -> (fail_max, reset_timeout)


class Breakers:
    """One pybreaker CircuitBreaker per host; `fail_max` 0 turns breakers off.

    `limits` gives each collector's thresholds (its policy); without it every breaker
    has `fail_max` and `reset_timeout`. `on_transition` hears every state change."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        *,
        fail_max: int,
        reset_timeout: float,
        limits: Limits | None = None,
        on_transition: Transition | None = None,
        key_ttl: int = 24 * 3600,
    ) -> None:
        self._url = redis_url
        self._names = RedisKeys(prefix)
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self._limits = limits
        self._listeners = [_Transitions(on_transition)] if on_transition else []
        self._key_ttl = max(key_ttl, int(reset_timeout * 10))
        self._redis: Redis | None = None
        self._pid = 0
        self._by_host: dict[str, pybreaker.CircuitBreaker] = {}
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()

    # wiring ---------------------------------------------------------------------
    @property
    def redis(self) -> Redis:
        with self._client_lock:
            # Under the lock: threads racing through the first use each made a client, and
            # a dropped one closed its pool, connections in use by other threads included.
            if self._redis is None or self._pid != os.getpid():  # first use, or a forked child
                self._redis = redis_client(self._url)
                self._pid = os.getpid()
                self._by_host = {}
            return self._redis

    def limits(self, host: str) -> tuple[int, float]:
        """(fail_max, reset_timeout) of `host`'s breaker."""
        if self._limits is None:
            return self.fail_max, self.reset_timeout
        return self._limits(breaker_collector(host))

    def _namespace(self, host: str) -> str:
        return self._names.breaker_namespace(host)

    def _keys(self, host: str) -> list[str]:
        ns = self._namespace(host)
        names = ("state", "fail_counter", "success_counter", "opened_at")
        return [f"{ns}:pybreaker:{k}" for k in names]

    def _probe(self, host: str) -> str:
        return f"{self._namespace(host)}:probe"

    def _breaker(self, host: str) -> pybreaker.CircuitBreaker:
        redis = self.redis
        with self._lock:
            cb = self._by_host.get(host)
            if cb is None:
                storage = pybreaker.CircuitRedisStorage(
                    pybreaker.STATE_CLOSED, redis, namespace=self._namespace(host)
                )
                fail_max, reset_timeout = self.limits(host)
                cb = pybreaker.CircuitBreaker(
                    fail_max=fail_max,
                    reset_timeout=reset_timeout,
                    state_storage=storage,
                    name=host,
                    listeners=self._listeners,
                    throw_new_error_on_trip=False,  # the tripping call keeps its own error
                )
                self._by_host[host] = cb
            return cb

    def _touch(self, host: str, *, keys: bool = True) -> list[Any]:
        """Mark `host` seen in ``cb:hosts`` (and, with `keys`, extend its keys' TTL);
        with `keys` False, also read its state and failure count (`_clean`). One pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        if keys:
            for key in self._keys(host):
                pipe.expire(key, self._key_ttl)
        else:
            pipe.mget(self._keys(host)[:2])  # state, fail_counter
        pipe.zadd(self._names.breaker_hosts, {host: time.time()})
        pipe.zremrangebyscore(self._names.breaker_hosts, "-inf", time.time() - self._key_ttl)
        return pipe.execute()

    def _clean(self, host: str) -> bool:
        """Whether `host`'s breaker is closed with no failure counted (one round trip,
        which also touches ``cb:hosts``); a breaker never written is."""
        state, fails = cast(list[bytes | None], self._touch(host, keys=False)[0])
        closed = state is None or state.decode() == pybreaker.STATE_CLOSED
        return closed and int(fails or 0) == 0

    # use ------------------------------------------------------------------------
    def call(self, host: str, run: Callable[[], Outcome]) -> Outcome:
        """Run `run` under `host`'s breaker; CircuitOpen instead while it is open."""
        if not host or self.limits(host)[0] <= 0:
            return run()
        try:
            clean = self._clean(host)
        except RedisError:
            return run()  # breaker state unreachable: fail open, the retries still bound the work
        if clean:
            outcome = run()
            if not (isinstance(outcome, CollectorError) and outcome.retryable):
                return outcome  # nothing to count, nothing to reset
            return self._report(host, None, outcome)
        try:
            cb = self._breaker(host)
            refusal = self._refuse(host, cb)
        except RedisError:
            return run()  # breaker state unreachable: fail open, the retries still bound the work
        if refusal is not None:
            return refusal

        # The work runs outside pybreaker: its call() holds a per-breaker lock, which
        # would serialise every thread of a worker fetching from the same host. The
        # outcome is then reported through call(), which counts it and moves the state.
        return self._report(host, cb, run())

    def _report(self, host: str, cb: pybreaker.CircuitBreaker | None, outcome: Outcome) -> Outcome:
        """Count `outcome` in `host`'s breaker (pybreaker moves its state); return it."""

        def report() -> None:
            if isinstance(outcome, CollectorError) and outcome.retryable:
                raise _Transient(outcome)

        if cb is None:
            try:
                cb = self._breaker(host)
            except RedisError:
                return outcome  # breaker state unreachable: the outcome stands uncounted
        # _Transient: counted. CircuitBreakerError: another worker opened it meanwhile.
        with contextlib.suppress(_Transient, pybreaker.CircuitBreakerError, RedisError):
            cb.call(report)
        with contextlib.suppress(RedisError):
            self._touch(host)
            if cb.current_state != pybreaker.STATE_HALF_OPEN:
                self.redis.delete(self._probe(host))  # the probe decided: next one may go
        return outcome

    def _half_open_at(self, cb: pybreaker.CircuitBreaker) -> float:
        opened = cast(Any, cb._state_storage).opened_at
        start = opened.timestamp() if opened is not None else time.time()
        return start + float(cb.reset_timeout)

    def _refuse(self, host: str, cb: pybreaker.CircuitBreaker) -> CircuitOpen | None:
        """While open: refuse. Once the cool-down passed: one probe for everyone."""
        state = cb.current_state
        if state == pybreaker.STATE_CLOSED:
            return None
        half_open_at = self._half_open_at(cb)
        if state == pybreaker.STATE_OPEN and time.time() < half_open_at:
            return CircuitOpen(host, half_open_at)
        # cool-down over (or half-open already): only the holder of the probe token calls
        token = self._probe(host)
        reset_timeout = float(cb.reset_timeout)
        if self.redis.set(token, b"1", nx=True, ex=max(1, int(reset_timeout))):
            return None  # this call is the probe; the next trip or close ends the token
        return CircuitOpen(host, time.time() + min(reset_timeout, 5.0))

    def states(self, limit: int = 100) -> dict[str, dict[str, Any]]:
        """Every host's breaker seen recently: state, consecutive failures, half-open time."""
        hosts = cast(
            list[bytes], self.redis.zrevrange(self._names.breaker_hosts, 0, max(0, limit - 1))
        )
        out: dict[str, dict[str, Any]] = {}
        for raw in hosts:
            host = raw.decode()
            ns = f"{self._namespace(host)}:pybreaker:"
            state, fails, opened = cast(
                list[bytes | None],
                self.redis.mget([f"{ns}state", f"{ns}fail_counter", f"{ns}opened_at"]),
            )
            info: dict[str, Any] = {
                "state": (state or b"closed").decode(),
                "consecutive_failures": int(fails or 0),
            }
            if info["state"] != pybreaker.STATE_CLOSED and opened is not None:
                info["half_open_at"] = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(opened) + self.limits(host)[1])
                )
            out[host] = info
        return out
