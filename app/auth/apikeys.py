"""API keys: `cq_<prefix>_<secret><checksum>`, shown once, stored only as a hash.

The prefix is the key's public id (listing, revoking, logs); the secret never
leaves `create`/`rotate`. The checksum (CRC32 of the rest, base62) lets a
scanner spot a leaked key, and lets us refuse a mistyped one without touching
Redis. Layout (under the configured prefix ``p``)::

    p key:{prefix}   hash  prefix hash owner name scopes created_at expires_at
                           last_used_at revoked_at cidrs rate_limits
                           rotated_to rotated_from rotation_period schema_version
    p keys           zset  every key prefix (score: creation time)

Creation, rotation, revocation and the first use from a new network are recorded in
the key's audit trail (`app.auth.keyaudit`). A key is *flagged* (`ApiKey.notice`) when
it is past its rotation period or within the expiry warning window: the API says so in
the headers of every answer to it (docs/decisions.md, "Secret rotation: API keys").
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import string
import time
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis

from app.auth.failures import CredentialRejected
from app.auth.keyaudit import KeyAudit, KeyEvent
from app.errors import Conflict, NotFound
from app.migrations import versions
from app.rediskeys import RedisKeys
from schemas.keys import ADMIN, SCOPES, is_key_owner

__all__ = [
    "ADMIN",
    "SCOPES",
    "ApiKey",
    "KeyNotice",
    "KeyStore",
    "format_token",
    "looks_like_key",
    "parse_token",
]

_CACHE_MAX = 10_000  # records a process keeps (one per key in use)
TOKEN_PREFIX = "cq_"  # noqa: S105 - the public marker of our tokens, not a secret
_ALPHABET = string.digits + string.ascii_letters  # base62: no separators inside a token
_PREFIX_ALPHABET = string.digits + string.ascii_lowercase
_PREFIX_LEN, _SECRET_LEN, _CHECK_LEN = 12, 32, 6
_TOKEN = re.compile(
    rf"^cq_([0-9a-z]{{{_PREFIX_LEN}}})_([0-9A-Za-z]{{{_SECRET_LEN}}})([0-9A-Za-z]{{{_CHECK_LEN}}})$"
)


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def _checksum(prefix: str, secret: str) -> str:
    return _b62(zlib.crc32(f"{TOKEN_PREFIX}{prefix}_{secret}".encode()), _CHECK_LEN)


def format_token(prefix: str, secret: str) -> str:
    return f"{TOKEN_PREFIX}{prefix}_{secret}{_checksum(prefix, secret)}"


def looks_like_key(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def parse_token(token: str) -> str:
    """The key prefix of a well-formed token; CredentialRejected if malformed or mistyped."""
    m = _TOKEN.fullmatch(token)
    if m is None or not hmac.compare_digest(m.group(3), _checksum(m.group(1), m.group(2))):
        raise CredentialRejected("malformed API key (format or checksum)")
    return m.group(1)


def _hash(token: str) -> str:
    # The secret has ~190 bits of entropy: a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class KeyNotice:
    """Why a key is flagged, since when, and when it stops working (None: no expiry)."""

    reason: str  # expiring | rotation_due
    since: float
    sunset: float | None


# Only one rotation claims a key: the successor created by a losing concurrent call is
# deleted before anyone sees its token. KEYS key hash. ARGV successor, expires_at.
_CLAIM_ROTATION = """
local to = redis.call('HGET', KEYS[1], 'rotated_to')
if to and to ~= '' then return 0 end
redis.call('HSET', KEYS[1], 'rotated_to', ARGV[1], 'expires_at', ARGV[2])
return 1
"""


@dataclass(frozen=True)
class ApiKey:
    """A key's public record (never the secret or its hash)."""

    prefix: str
    owner: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    cidrs: tuple[str, ...] = ()
    rate_limits: dict[str, str] = field(default_factory=dict)
    rotated_to: str | None = None
    rotated_from: str | None = None
    rotation_period: int | None = None  # seconds from creation until it is due for rotation

    @property
    def rotation_due_at(self) -> float | None:
        return self.created_at + self.rotation_period if self.rotation_period else None

    def notice(self, now: float, warning: float) -> KeyNotice | None:
        """Why the key should be replaced soon, if it should: it expires within `warning`
        seconds (or is being rotated out), or it is past its rotation period."""
        if self.state(now) not in ("active", "rotating"):
            return None
        warn_at = self.expires_at - warning if self.expires_at is not None else None
        due_at = self.rotation_due_at
        flagged = [t for t in (warn_at, due_at) if t is not None and now >= t]
        if not flagged:
            return None
        reason = "expiring" if warn_at is not None and now >= warn_at else "rotation_due"
        return KeyNotice(reason, max(self.created_at, min(flagged)), self.expires_at)

    def lifetime(self) -> float | None:
        """Seconds from creation to expiry (None: no expiry)."""
        return None if self.expires_at is None else self.expires_at - self.created_at

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "rotated_out" if self.rotated_to else "expired"
        return "rotating" if self.rotated_to else "active"

    def allows(self, ip: str | None) -> bool:
        if not self.cidrs:
            return True
        if ip is None:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(c, strict=False) for c in self.cidrs)

    def public(self, now: float | None = None, warning: float = 0) -> dict[str, Any]:
        at = time.time() if now is None else now
        notice = self.notice(at, warning)
        return {
            "prefix": self.prefix,
            "owner": self.owner,
            "name": self.name,
            "scopes": list(self.scopes),
            "state": self.state(at),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
            "cidrs": list(self.cidrs),
            "rate_limits": dict(self.rate_limits),
            "rotated_to": self.rotated_to,
            "rotated_from": self.rotated_from,
            "rotation_period": self.rotation_period,
            "rotation_due_at": _iso(self.rotation_due_at),
            "flag": notice.reason if notice else None,
        }

    def _fields(self, token_hash: str) -> dict[Any, str]:  # Any: redis-py's invariant keys
        def num(v: float | None) -> str:
            return "" if v is None else repr(v)

        return {
            "prefix": self.prefix,
            "hash": token_hash,
            "owner": self.owner,
            "name": self.name,
            "scopes": json.dumps(list(self.scopes)),
            "created_at": num(self.created_at),
            "expires_at": num(self.expires_at),
            "last_used_at": num(self.last_used_at),
            "revoked_at": num(self.revoked_at),
            "cidrs": json.dumps(list(self.cidrs)),
            "rate_limits": json.dumps(self.rate_limits),
            "rotated_to": self.rotated_to or "",
            "rotated_from": self.rotated_from or "",
            "rotation_period": str(self.rotation_period or ""),
            versions.FIELD: str(versions.API_KEY),  # the stored format (app.migrations)
        }

    @classmethod
    def _from(cls, h: dict[str, str]) -> ApiKey:
        def num(k: str) -> float | None:
            return float(h[k]) if h.get(k) else None

        return cls(
            prefix=h["prefix"],
            owner=h["owner"],
            name=h["name"],
            scopes=tuple(json.loads(h["scopes"])),
            created_at=float(h["created_at"]),
            expires_at=num("expires_at"),
            last_used_at=num("last_used_at"),
            revoked_at=num("revoked_at"),
            cidrs=tuple(json.loads(h.get("cidrs") or "[]")),
            rate_limits=json.loads(h.get("rate_limits") or "{}"),
            rotated_to=h.get("rotated_to") or None,
            rotated_from=h.get("rotated_from") or None,
            rotation_period=int(h["rotation_period"]) if h.get("rotation_period") else None,
        )


class KeyStore:
    """API keys in Redis. `verify` is on every request's path: one HGETALL, or none while
    the key's record is in this process's cache (`cache_ttl` seconds, docs/decisions.md
    "Performance: the submit path")."""

    def __init__(
        self, redis: Redis, prefix: str, last_used_interval: int = 60, *, cache_ttl: float = 0
    ) -> None:
        self.redis = redis
        self.names = RedisKeys(prefix)
        self.last_used_interval = last_used_interval
        self.audit = KeyAudit(redis, self.names)
        self._claim_rotation = redis.register_script(_CLAIM_ROTATION)
        self.cache_ttl = cache_ttl
        # prefix → (record, stored hash, monotonic time it was read); only keys that exist
        self._cache: dict[str, tuple[ApiKey, str, float]] = {}

    def _key(self, key_prefix: str) -> str:
        return self.names.api_key(key_prefix)

    @property
    def _index(self) -> str:
        return self.names.api_keys

    def _load(self, key_prefix: str) -> tuple[ApiKey, str] | None:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self._key(key_prefix)))
        if not raw:
            return None
        h = {k.decode(): v.decode() for k, v in raw.items()}
        return ApiKey._from(h), h["hash"]

    def create(
        self,
        *,
        owner: str,
        name: str,
        scopes: list[str] | tuple[str, ...],
        expires_at: float | None = None,
        cidrs: list[str] | tuple[str, ...] = (),
        rate_limits: dict[str, str] | None = None,
        rotation_period: int | None = None,
        rotated_from: str | None = None,
        actor: str = "system",
    ) -> tuple[ApiKey, str]:
        """A new key and its token (the only time the token exists); `actor` made it."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        if not is_key_owner(owner):  # the schema says why; this guards every other caller
            raise ValueError(f"not a valid key owner: {owner!r}")
        for _ in range(5):  # a prefix collision is astronomically rare; never overwrite one
            key_prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LEN))
            secret = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
            token = format_token(key_prefix, secret)
            key = ApiKey(
                prefix=key_prefix,
                owner=owner,
                name=name,
                scopes=tuple(dict.fromkeys(scopes)),
                created_at=time.time(),
                expires_at=expires_at,
                cidrs=tuple(cidrs),
                rate_limits=dict(rate_limits or {}),
                rotated_from=rotated_from,
                rotation_period=rotation_period or None,
            )
            if self.redis.hsetnx(self._key(key_prefix), "prefix", key_prefix):
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(self._key(key_prefix), mapping=key._fields(_hash(token)))
                pipe.zadd(self._index, {key_prefix: key.created_at})
                pipe.execute()
                self.audit.record(key_prefix, KeyEvent.CREATED, actor, rotated_from=rotated_from)
                return key, token
        raise RuntimeError("could not allocate a key prefix")

    def get(self, key_prefix: str) -> ApiKey:
        found = self._load(key_prefix) if re.fullmatch(r"[0-9a-z]{1,32}", key_prefix) else None
        if found is None:
            raise NotFound(f"no key {key_prefix}")
        return found[0]

    def list(self, owner: str | None = None) -> list[ApiKey]:
        """Keys, newest first; only `owner`'s when given (one pipelined round trip)."""
        prefixes = cast(list[bytes], self.redis.zrevrange(self._index, 0, -1))
        pipe = self.redis.pipeline(transaction=False)
        for p in prefixes:
            pipe.hgetall(self._key(p.decode()))
        out = []
        for raw in cast(list[dict[bytes, bytes]], pipe.execute()):
            if not raw:
                continue
            key = ApiKey._from({k.decode(): v.decode() for k, v in raw.items()})
            if owner is None or key.owner == owner:
                out.append(key)
        return out

    def flagged(self, now: float, warning: float) -> builtins.list[tuple[ApiKey, KeyNotice]]:
        """Keys past their rotation period or within `warning` seconds of expiry."""
        return [(k, n) for k in self.list() if (n := k.notice(now, warning)) is not None]

    def due_for_rotation(self, now: float) -> builtins.list[ApiKey]:
        """Active keys past their rotation period."""
        return [
            k
            for k in self.list()
            if k.state(now) == "active"
            and k.rotation_due_at is not None
            and now >= k.rotation_due_at
        ]

    def revoke(self, key_prefix: str, actor: str = "system") -> ApiKey:
        key = self.get(key_prefix)
        if key.revoked_at is None:
            self.redis.hset(self._key(key_prefix), "revoked_at", repr(time.time()))
            self.forget(key_prefix)
            self.audit.record(key_prefix, KeyEvent.REVOKED, actor)
        return self.get(key_prefix)

    def rotate(
        self, key_prefix: str, overlap: int, actor: str = "system"
    ) -> tuple[ApiKey, str, ApiKey]:
        """Issue a successor; the old key keeps working for `overlap` seconds more.

        The successor has the old key's owner, name, scopes, networks, limits and rotation
        period, and a lifetime as long as the old key's (from now). Only one rotation of a
        key succeeds (Conflict for the others). Returns (successor, its token, the old key
        after the change).
        """
        old = self.get(key_prefix)
        now = time.time()
        state = old.state(now)
        if state != "active":
            raise Conflict(f"key {key_prefix} is {state}; only an active key can be rotated")
        lifetime = old.lifetime()
        new, token = self.create(
            owner=old.owner,
            name=old.name,
            scopes=old.scopes,
            expires_at=now + lifetime if lifetime is not None else None,
            cidrs=old.cidrs,
            rate_limits=old.rate_limits,
            rotation_period=old.rotation_period,
            rotated_from=old.prefix,
            actor=actor,
        )
        until = now + overlap
        if old.expires_at is not None:
            until = min(until, old.expires_at)
        claimed = self._claim_rotation(keys=[self._key(key_prefix)], args=[new.prefix, repr(until)])
        self.forget(key_prefix)
        if not claimed:
            self._discard(new.prefix)
            raise Conflict(f"key {key_prefix} was rotated meanwhile")
        self.audit.record(key_prefix, KeyEvent.ROTATED, actor, successor=new.prefix)
        return new, token, self.get(key_prefix)

    def _discard(self, key_prefix: str) -> None:
        """Remove a key nobody ever saw the token of (a lost rotation race)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._key(key_prefix), self.names.api_key_events(key_prefix))
        pipe.zrem(self._index, key_prefix)
        pipe.execute()
        self.forget(key_prefix)

    def _cached_load(self, key_prefix: str) -> tuple[ApiKey, str] | None:
        """`_load` through the cache. Every state check still runs on each request (an
        expiry or the end of a rotation overlap is seen at once); what may be up to
        `cache_ttl` old is a change another process wrote to the record."""
        if self.cache_ttl <= 0:
            return self._load(key_prefix)
        now = time.monotonic()
        hit = self._cache.get(key_prefix)
        if hit is not None and now - hit[2] < self.cache_ttl:
            return hit[0], hit[1]
        found = self._load(key_prefix)
        if found is None:
            self._cache.pop(key_prefix, None)
            return None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # many keys in use: start over rather than track an order
        self._cache[key_prefix] = (*found, now)
        return found

    def forget(self, key_prefix: str) -> None:
        """Drop a key from this process's cache (after a change made here)."""
        self._cache.pop(key_prefix, None)

    def verify(self, token: str, client_ip: str | None) -> ApiKey:
        """The key a token belongs to; CredentialRejected if it must not be used.

        The reason (for the log) names the key's prefix, its public id; the client
        gets one answer whatever the reason.
        """
        key_prefix = parse_token(token)
        found = self._cached_load(key_prefix)
        # Compare against a dummy hash when the prefix is unknown: same work, same timing.
        stored = found[1] if found else "0" * 64
        if not hmac.compare_digest(stored, _hash(token)) or found is None:
            why = "wrong secret" if found else "unknown prefix"
            raise CredentialRejected(f"API key {key_prefix}: {why}")
        key = found[0]
        now = time.time()
        state = key.state(now)
        if state in ("revoked", "expired", "rotated_out"):
            raise CredentialRejected(f"API key {key_prefix}: {state.replace('_', ' ')}")
        if not key.allows(client_ip):
            raise CredentialRejected(f"API key {key_prefix}: not valid from {client_ip}")
        if key.last_used_at is None or now - key.last_used_at >= self.last_used_interval:
            # Throttled: a write per request would double the cost of a read.
            self.redis.hset(self._key(key_prefix), "last_used_at", repr(now))
            if key_prefix in self._cache:  # the cached copy knows it was just written
                _, stored, read_at = self._cache[key_prefix]
                self._cache[key_prefix] = (replace(key, last_used_at=now), stored, read_at)
        self.audit.seen_from(key_prefix, client_ip)
        return key
