"""The rate limiter's Redis storage: limits' own, with the answer's headers folded into the hit.

flask-limiter counts a request with one script call (INCRBY, EXPIRE on a new window), then
reads the window again (GET and TTL) for the ``RateLimit-*`` headers: three round trips.
Here the hit's script returns the count and the window's TTL together, and the header
reads of the same request use them: one round trip. Everything else is limits'
`RedisStorage` (docs/decisions.md, "Performance: the submit path").
"""

from __future__ import annotations

import threading
import time

from limits.storage import RedisStorage

__all__ = ["FoldedRedisStorage", "storage_uri"]

_SCHEME = "collectq+"


def storage_uri(redis_url: str) -> str:
    """The limiter's storage URI for `redis_url` (redis://, rediss:// or unix://)."""
    return _SCHEME + redis_url


# limits' incr_expire.lua, returning the window's TTL with the count.
_INCR_EXPIRE_TTL = """
local amount = tonumber(ARGV[2])
local current = redis.call('INCRBY', KEYS[1], amount)
if current == amount then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return {current, redis.call('TTL', KEYS[1])}
"""


class FoldedRedisStorage(RedisStorage):
    """`RedisStorage` whose `get`/`get_expiry` of the key a thread just hit need no round trip.

    The remembered window belongs to the thread's current request: `forget()` runs at the
    start of each request, so a later request never reads an earlier one's count.
    """

    STORAGE_SCHEME = [f"{_SCHEME}redis", f"{_SCHEME}rediss", f"{_SCHEME}unix"]

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self._incr_ttl = self.get_connection().register_script(_INCR_EXPIRE_TTL.encode())
        self._hit = threading.local()

    def forget(self) -> None:
        self._hit.window = None

    def _window(self, key: str) -> tuple[int, float] | None:
        hit: tuple[str, int, float] | None = getattr(self._hit, "window", None)
        return (hit[1], hit[2]) if hit is not None and hit[0] == key else None

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current, ttl = self._incr_ttl([self.prefixed_key(key)], [expiry, amount])
        self._hit.window = (key, int(current), time.time() + max(int(ttl), 0))
        return int(current)

    def get(self, key: str) -> int:
        window = self._window(key)
        return window[0] if window is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        window = self._window(key)
        return window[1] if window is not None else super().get_expiry(key)
