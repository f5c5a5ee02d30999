"""Each owner's account webhook: where events that belong to no job go (`key.expiring`).

    p whep:{owner}  hash  url created_at updated_at schema_version

Signed with the owner's signing secret like every delivery (`app.webhooks.secrets`); the
URL passes the network guard when it is set and again at each delivery.
"""

from __future__ import annotations

from typing import Any, cast

from redis import Redis

from app.jobs.envelope import utcnow
from app.migrations import versions
from app.rediskeys import RedisKeys

__all__ = ["ACCOUNT_EVENTS", "EndpointStore"]

ACCOUNT_EVENTS = ("key.expiring",)


class EndpointStore:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys

    def get(self, owner: str) -> dict[str, Any] | None:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.webhook_endpoint(owner)))
        if b"url" not in raw:
            return None
        return {
            "url": raw[b"url"].decode(),
            "events": list(ACCOUNT_EVENTS),
            "created_at": raw.get(b"created_at", b"").decode(),
            "updated_at": raw.get(b"updated_at", b"").decode(),
        }

    def put(self, owner: str, url: str) -> dict[str, Any]:
        key, now = self.keys.webhook_endpoint(owner), utcnow()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(key, "created_at", now)
        pipe.hset(
            key,
            mapping={"url": url, "updated_at": now, versions.FIELD: str(versions.WEBHOOK_ENDPOINT)},
        )
        pipe.execute()
        found = self.get(owner)
        assert found is not None  # noqa: S101 - written just above
        return found

    def delete(self, owner: str) -> bool:
        return bool(self.redis.delete(self.keys.webhook_endpoint(owner)))
