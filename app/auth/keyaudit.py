"""The audit trail of API keys: who created, rotated or revoked a key, and when it was
first used from a network it had not been used from. Never a secret or its hash.

    p keyev:{prefix}   stream  entries {e: JSON {event, at, prefix, actor, …}}, newest
                               `MAX_EVENTS` kept (no age limit: an audit trail outlives
                               the key's use; a key's record is kept after revocation too)
    p keynet:{prefix}  set     the client networks (/24 for IPv4, /64 for IPv6) seen

Actors: ``key:{prefix}`` (an admin key), ``jwt:{issuer id}:{sub}``, ``self`` (the key
rotated itself), ``cli:{user}@{host}`` (the `collectq keys` commands, straight in Redis),
``system`` (anything else, e.g. tests).
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections import OrderedDict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redis import Redis

from app.migrations import versions
from app.rediskeys import RedisKeys
from app.streampage import newest_first

__all__ = ["EVENT_FIELD", "KeyAudit", "KeyEvent", "network_of"]

EVENT_FIELD = "e"  # the field of a stream entry that holds the event
MAX_EVENTS = 1000
_SEEN_MAX = 10_000  # (key, network) pairs this process remembers having recorded


class KeyEvent(StrEnum):
    CREATED = "created"
    ROTATED = "rotated"
    REVOKED = "revoked"
    NEW_NETWORK = "new_network"
    EXPIRING = "expiring"  # the owner was told (key.expiring webhook)


@functools.lru_cache(maxsize=4096)  # on every authenticated request: parsed once per address
def network_of(ip: str) -> str | None:
    """The network a client address is counted in: its /24 (IPv4) or /64 (IPv6)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    bits = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KeyAudit:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        # per process: a pair recorded once costs no round trip on later requests
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def record(self, key_prefix: str, event: KeyEvent, actor: str, **detail: Any) -> None:
        entry = {"event": event.value, "at": _now_iso(), "prefix": key_prefix, "actor": actor}
        entry.update({k: v for k, v in detail.items() if v is not None})
        body = json.dumps(
            versions.stamped(entry, versions.KEY_EVENT), separators=(",", ":"), sort_keys=True
        )
        self.redis.xadd(
            self.keys.api_key_events(key_prefix),
            {EVENT_FIELD: body},
            maxlen=MAX_EVENTS,
            approximate=True,
        )

    def seen_from(self, key_prefix: str, ip: str | None) -> None:
        """Record `new_network` the first time the key is used from `ip`'s network."""
        network = network_of(ip) if ip else None
        if network is None or (key_prefix, network) in self._seen:
            return
        if self.redis.sadd(self.keys.api_key_networks(key_prefix), network):
            self.record(key_prefix, KeyEvent.NEW_NETWORK, f"key:{key_prefix}", network=network)
        self._seen[(key_prefix, network)] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)

    def list(
        self, key_prefix: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The key's events, newest first (cursor pagination)."""
        return newest_first(
            self.redis,
            self.keys.api_key_events(key_prefix),
            EVENT_FIELD,
            limit=limit,
            cursor=cursor,
        )
