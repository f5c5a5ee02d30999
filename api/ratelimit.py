"""Per-client rate limits (flask-limiter on the Redis storage, shared by every API process).

The client is the authenticated key / JWT subject, else the client address
(after ProxyFix, which trusts only COLLECTQ_TRUSTED_PROXIES hops of
X-Forwarded-For). Each route class (submit, read, admin) has one bucket per
client, with its limit from settings unless the key overrides it. Answers
carry ``RateLimit-Limit/-Remaining/-Reset/-Policy`` (draft-ietf-httpapi-ratelimit-headers,
Reset in seconds) and, on 429, ``Retry-After``.

A request counts 1 against its bucket, unless its view is marked with `counts_as`
(``POST /v1/jobs/batch``: one per job in it, so a batch of N is N submits).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limit, Limiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from api.identity import route_class
from api.ratelimitstore import FoldedRedisStorage, storage_uri
from app.auth.principal import Principal
from app.redisclient import redis_pool
from app.rediskeys import RedisKeys
from app.runtime import runtime

__all__ = ["EXPOSED_HEADERS", "client_key", "counts_as", "init_ratelimit"]

log = logging.getLogger("collectq.ratelimit")

EXPOSED_HEADERS = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"]


def client_key() -> str:
    who: Principal | None = g.get("principal")
    if who is not None and who.kind != "open":
        return who.client_id
    return f"ip:{request.remote_addr or 'unknown'}"


def _limit() -> str:
    rc = route_class()
    if rc is None or request.method == "OPTIONS":  # CORS preflights are not counted
        return ""
    who: Principal | None = g.get("principal")
    if who is not None and rc in who.rate_limits:
        return who.rate_limits[rc]
    return runtime().settings.rate_limit(rc)


F = TypeVar("F", bound=Callable[..., Any])
_COST_ATTR = "_collectq_rate_cost"


def counts_as(cost: Callable[[], int]) -> Callable[[F], F]:
    """Mark a view (a function route): a request to it costs `cost()` (≥ 1) of its bucket.

    `cost` runs before the view, on the raw request (the body is not validated yet).
    """

    def mark(fn: F) -> F:
        setattr(fn, _COST_ATTR, cost)
        return fn

    return mark


def _cost() -> int:
    view = current_app.view_functions.get(request.endpoint or "")
    cost: Callable[[], int] | None = getattr(view, _COST_ATTR, None)
    return max(1, cost()) if cost is not None else 1


def _scope(_endpoint: str) -> str:
    return route_class() or "none"


def init_ratelimit(app: Flask) -> Limiter:
    """Register the limiter's request hook (call between authenticate and authorize)."""
    settings = runtime(app).settings
    limiter = Limiter(
        client_key,
        default_limits=[Limit(_limit, scope=_scope, shared=True, cost=_cost)],
        strategy="fixed-window",
        # limits' Redis storage with the header reads folded into the hit (one round trip)
        storage_uri=storage_uri(settings.redis_url),
        # a bounded pool callers wait for (the gevent worker runs many requests at once);
        # it carries redis_options() itself
        storage_options=cast(
            dict[str, str | int],  # flask-limiter's hint; it passes each to redis
            {"connection_pool": redis_pool(settings.redis_url)},
        ),
        key_prefix=RedisKeys(settings.redis_prefix).rate_limits,
        headers_enabled=False,  # written below, with the standard names and Reset in seconds
        enabled=settings.rate_limit_enabled,
    )
    limiter.init_app(app)
    if settings.rate_limit_enabled:  # a disabled limiter has no storage
        storage = cast(FoldedRedisStorage, limiter.storage)
        app.before_request_funcs.setdefault(None, []).insert(0, storage.forget)

    @app.after_request
    def _headers(response: Response) -> Response:
        current = limiter.current_limit
        if current is None:
            return response
        window = current.limit.get_expiry()
        try:
            # limits rounds reset_at up to the next whole second: never promise more than a window
            reset = min(window, max(0, math.ceil(current.reset_at - time.time())))
            remaining = current.remaining
        except (RedisError, StorageError):
            # Redis went away after the request was counted: the answer (a 202 for a job
            # already accepted, or the 503 for Redis itself) matters more than its headers.
            log.warning("rate-limit headers left out: Redis unreachable")
            return response
        h = response.headers
        h["RateLimit-Limit"] = str(current.limit.amount)
        h["RateLimit-Remaining"] = str(remaining)
        h["RateLimit-Reset"] = str(reset)
        h["RateLimit-Policy"] = f"{current.limit.amount};w={window}"
        if response.status_code == 429:
            h["Retry-After"] = str(max(1, reset))
        return response

    return limiter
