"""The one way collectq opens Redis: binary-safe, with bounded connect and read times.

A client is created lazily by its owner (after a worker forks) and never at import.
Replies are bytes (no ``decode_responses``): artifacts are raw bytes, and pybreaker
decodes its own values.
"""

from __future__ import annotations

from typing import Any

from redis import Redis

__all__ = ["CONNECT_TIMEOUT", "redis_client", "redis_options"]

CONNECT_TIMEOUT = 2.0  # an unreachable Redis is a quick 503, not a hung request
DEFAULT_READ_TIMEOUT = 5.0


def redis_options(read_timeout: float = DEFAULT_READ_TIMEOUT) -> dict[str, Any]:
    """Client options, also for libraries that build their own client (flask-limiter)."""
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": read_timeout,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }


def redis_client(url: str, *, read_timeout: float = DEFAULT_READ_TIMEOUT) -> Redis:
    """A client for `url`; `read_timeout` bounds each reply (seconds)."""
    return Redis.from_url(url, **redis_options(read_timeout))
