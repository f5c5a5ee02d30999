"""The one way collectq opens Redis: binary-safe, with bounded connect and read times.

A client is created lazily by its owner (after a worker forks) and never at import.
Replies are bytes (no ``decode_responses``): artifacts are raw bytes, and pybreaker
decodes its own values.
"""

from __future__ import annotations

from typing import Any

from redis import BlockingConnectionPool, Redis

__all__ = ["CONNECT_TIMEOUT", "redis_client", "redis_options", "redis_pool"]

CONNECT_TIMEOUT = 2.0  # an unreachable Redis is a quick 503, not a hung request
DEFAULT_READ_TIMEOUT = 5.0
# Connections per pool, and how long a caller waits for a free one. Under the API's gevent
# worker hundreds of requests (and waiting clients) run at once in one process: they
# share at most POOL_MAX connections, waiting their turn, instead of failing past
# redis-py's default cap or opening one each (docs/decisions.md, "Live events").
POOL_MAX = 32
POOL_WAIT = 5.0


def redis_options(read_timeout: float = DEFAULT_READ_TIMEOUT) -> dict[str, Any]:
    """Client options, also for libraries that build their own client (flask-limiter)."""
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": read_timeout,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }


def redis_pool(url: str, *, read_timeout: float = DEFAULT_READ_TIMEOUT) -> BlockingConnectionPool:
    """A bounded pool for `url` whose callers wait (up to POOL_WAIT s) for a free connection."""
    return BlockingConnectionPool.from_url(
        url, max_connections=POOL_MAX, timeout=POOL_WAIT, **redis_options(read_timeout)
    )


def redis_client(url: str, *, read_timeout: float = DEFAULT_READ_TIMEOUT) -> Redis:
    """A client for `url`; `read_timeout` bounds each reply (seconds)."""
    client = Redis(connection_pool=redis_pool(url, read_timeout=read_timeout))
    client.auto_close_connection_pool = True
    return client
