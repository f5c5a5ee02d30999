"""API keys: `cq_<prefix>_<secret><checksum>`, shown once, stored only as a hash.

The prefix is the key's public id (listing, revoking, logs); the secret never
leaves `create`/`rotate`. The checksum (CRC32 of the rest, base62) lets a
scanner spot a leaked key, and lets us refuse a mistyped one without touching
Redis. Layout (under the configured prefix ``p``)::

    p key:{prefix}   hash  prefix hash owner name scopes created_at expires_at
                           last_used_at revoked_at cidrs rate_limits
                           rotated_to rotated_from
    p keys           zset  every key prefix (score: creation time)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import string
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from redis import Redis

from app.auth.failures import CredentialRejected
from app.errors import Conflict, NotFound
from app.rediskeys import RedisKeys
from schemas.keys import ADMIN, SCOPES, is_key_owner

__all__ = [
    "ADMIN",
    "SCOPES",
    "ApiKey",
    "KeyStore",
    "format_token",
    "looks_like_key",
    "parse_token",
]

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

    def public(self, now: float | None = None) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "owner": self.owner,
            "name": self.name,
            "scopes": list(self.scopes),
            "state": self.state(time.time() if now is None else now),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
            "cidrs": list(self.cidrs),
            "rate_limits": dict(self.rate_limits),
            "rotated_to": self.rotated_to,
            "rotated_from": self.rotated_from,
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
        )


class KeyStore:
    """API keys in Redis. `verify` is on every request's path: one HGETALL."""

    def __init__(self, redis: Redis, prefix: str, last_used_interval: int = 60) -> None:
        self.redis = redis
        self.names = RedisKeys(prefix)
        self.last_used_interval = last_used_interval

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
        rotated_from: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its token (the only time the token exists)."""
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
            )
            if self.redis.hsetnx(self._key(key_prefix), "prefix", key_prefix):
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(self._key(key_prefix), mapping=key._fields(_hash(token)))
                pipe.zadd(self._index, {key_prefix: key.created_at})
                pipe.execute()
                return key, token
        raise RuntimeError("could not allocate a key prefix")

    def get(self, key_prefix: str) -> ApiKey:
        found = self._load(key_prefix) if re.fullmatch(r"[0-9a-z]{1,32}", key_prefix) else None
        if found is None:
            raise NotFound(f"no key {key_prefix}")
        return found[0]

    def list(self, owner: str | None = None) -> list[ApiKey]:
        """Keys, newest first; only `owner`'s when given."""
        prefixes = cast(list[bytes], self.redis.zrevrange(self._index, 0, -1))
        out = []
        for p in prefixes:
            found = self._load(p.decode())
            if found is not None and (owner is None or found[0].owner == owner):
                out.append(found[0])
        return out

    def revoke(self, key_prefix: str) -> ApiKey:
        key = self.get(key_prefix)
        if key.revoked_at is None:
            self.redis.hset(self._key(key_prefix), "revoked_at", repr(time.time()))
        return self.get(key_prefix)

    def rotate(self, key_prefix: str, overlap: int) -> tuple[ApiKey, str, ApiKey]:
        """Issue a successor; the old key keeps working for `overlap` seconds more.

        Returns (successor, its token, the old key after the change).
        """
        old = self.get(key_prefix)
        state = old.state(time.time())
        if state != "active":
            raise Conflict(f"key {key_prefix} is {state}; only an active key can be rotated")
        new, token = self.create(
            owner=old.owner,
            name=old.name,
            scopes=old.scopes,
            expires_at=old.expires_at,
            cidrs=old.cidrs,
            rate_limits=old.rate_limits,
            rotated_from=old.prefix,
        )
        until = time.time() + overlap
        if old.expires_at is not None:
            until = min(until, old.expires_at)
        change: dict[Any, str] = {"rotated_to": new.prefix, "expires_at": repr(until)}
        self.redis.hset(self._key(key_prefix), mapping=change)
        return new, token, self.get(key_prefix)

    def verify(self, token: str, client_ip: str | None) -> ApiKey:
        """The key a token belongs to; CredentialRejected if it must not be used.

        The reason (for the log) names the key's prefix, its public id; the client
        gets one answer whatever the reason.
        """
        key_prefix = parse_token(token)
        found = self._load(key_prefix)
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
        return key
