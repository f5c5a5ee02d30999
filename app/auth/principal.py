"""Who is calling: credentials (API key or JWT) → a Principal with an owner and scopes.

Flask-free: `api.identity` extracts the credentials from the request and
applies the per-route scope; this module only decides who the caller is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.auth.apikeys import ADMIN, SCOPES, KeyNotice, KeyStore, looks_like_key
from app.auth.failures import CredentialRejected
from app.auth.jwtauth import JwtVerifier
from schemas.keys import is_key_owner

__all__ = ["OPEN_OWNER", "Authenticator", "Principal", "open_principal"]

OPEN_OWNER = "public"


@dataclass(frozen=True)
class Principal:
    kind: str  # key | jwt | open
    subject: str  # key prefix, `{issuer id}:{sub}` of a JWT, or the open owner
    owner: str  # a key's owner; `jwt:{issuer id}:{sub}` (never a key owner); or `public`
    scopes: frozenset[str]
    rate_limits: dict[str, str] = field(default_factory=dict)
    notice: KeyNotice | None = None  # a key past its rotation period or about to expire

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def has(self, scope: str) -> bool:
        return scope in self.scopes or self.is_admin

    @property
    def client_id(self) -> str:
        """The rate-limit identity: one bucket per key / JWT subject."""
        return f"{self.kind}:{self.subject}"


def open_principal() -> Principal:
    """The caller of an instance running with auth off (dev profile on loopback only)."""
    return Principal("open", OPEN_OWNER, OPEN_OWNER, frozenset(SCOPES))


class Authenticator:
    def __init__(self, keys: KeyStore, jwt: JwtVerifier | None, expiry_warning: float = 0) -> None:
        self.keys = keys
        self.jwt = jwt
        self.expiry_warning = expiry_warning

    def authenticate(self, token: str, client_ip: str | None) -> Principal:
        """The caller a credential names; CredentialRejected (one answer) if none."""
        if looks_like_key(token):
            key = self.keys.verify(token, client_ip)
            if not is_key_owner(key.owner):  # stored before owners were checked
                raise CredentialRejected(f"API key {key.prefix}: owner {key.owner!r} is reserved")
            notice = key.notice(time.time(), self.expiry_warning)
            return Principal(
                "key", key.prefix, key.owner, frozenset(key.scopes), key.rate_limits, notice
            )
        if token.count(".") == 2:
            if self.jwt is None:
                raise CredentialRejected("a JWT, but JWT is not enabled on this server")
            claims = self.jwt.verify(token)
            scopes = frozenset(s for s in claims.scopes if s in SCOPES)
            subject = f"{self.jwt.issuer_id}:{claims.subject}"
            return Principal("jwt", subject, claims.owner, scopes)
        raise CredentialRejected("neither an API key (cq_…) nor a JWT")
