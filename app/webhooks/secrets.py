"""Each owner's webhook signing secret (``whsec_…``), created on first use, rotatable.

    p whsec:{owner}  hash  current, created_at, previous, previous_until (epoch s),
                           schema_version

After a rotation the previous secret keeps signing until `previous_until`: a
delivery then carries two signatures (space-separated, as the Standard Webhooks
specification allows), so a receiver verifies with either secret while it
switches over.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from app.jobs.envelope import utcnow
from app.migrations import versions
from app.rediskeys import RedisKeys

__all__ = ["SECRET_PREFIX", "SecretStore", "WebhookSecret"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class WebhookSecret:
    current: str
    created_at: str
    previous: str | None = None
    previous_until: float | None = None

    def signing(self, now: float | None = None) -> list[str]:
        """The secrets that sign now: the current one, and the previous during the overlap."""
        now = time.time() if now is None else now
        if self.previous and self.previous_until and now < self.previous_until:
            return [self.current, self.previous]
        return [self.current]

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        live = len(self.signing(now)) == 2
        return {
            "secret": self.current,
            "created_at": self.created_at,
            "previous": self.previous if live else None,
            "previous_valid_until": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.previous_until))
                if live and self.previous_until
                else None
            ),
        }


class SecretStore:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys

    def get(self, owner: str) -> WebhookSecret:
        """The owner's secret, created on first use (two racing first uses agree: HSETNX)."""
        key = self.keys.webhook_secret(owner)
        raw = self._read(key)
        if raw is None:
            self.redis.hsetnx(key, "current", _new_secret())
            self.redis.hsetnx(key, "created_at", utcnow())
            self.redis.hsetnx(key, versions.FIELD, versions.WEBHOOK_SECRET)
            raw = self._read(key)
        assert raw is not None  # noqa: S101 - written just above
        return raw

    def rotate(self, owner: str, overlap: float) -> WebhookSecret:
        """A new current secret; the old one signs for `overlap` more seconds."""
        old = self.get(owner)
        key = self.keys.webhook_secret(owner)
        mapping: dict[Any, str | int] = {  # Any: redis-py's invariant keys
            "current": _new_secret(),
            "created_at": utcnow(),
            versions.FIELD: versions.WEBHOOK_SECRET,
        }
        if overlap > 0:
            mapping |= {"previous": old.current, "previous_until": repr(time.time() + overlap)}
            self.redis.hset(key, mapping=mapping)
        else:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(key, mapping=mapping)
            pipe.hdel(key, "previous", "previous_until")
            pipe.execute()
        new = self._read(key)
        assert new is not None  # noqa: S101 - written just above
        return new

    def _read(self, key: str) -> WebhookSecret | None:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(key))
        if b"current" not in raw:
            return None
        until = raw.get(b"previous_until")
        return WebhookSecret(
            current=raw[b"current"].decode(),
            created_at=raw.get(b"created_at", b"").decode(),
            previous=raw[b"previous"].decode() if b"previous" in raw else None,
            previous_until=float(until) if until else None,
        )
