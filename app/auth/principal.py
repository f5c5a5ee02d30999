"""Who is calling: credentials (API key or JWT) → a Principal with an owner and scopes.

Flask-free: `api.identity` extracts the credentials from the request and
applies the per-route scope; this module only decides who the caller is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.auth.apikeys import ADMIN, SCOPES, KeyStore, looks_like_key
from app.auth.jwtauth import JwtVerifier
from app.errors import Unauthorized

__all__ = ["OPEN_OWNER", "Authenticator", "Principal", "open_principal"]

OPEN_OWNER = "public"


@dataclass(frozen=True)
class Principal:
    kind: str  # key | jwt | open
    subject: str  # key prefix, JWT subject, or the open owner
    owner: str
    scopes: frozenset[str]
    rate_limits: dict[str, str] = field(default_factory=dict)

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
    def __init__(self, keys: KeyStore, jwt: JwtVerifier | None) -> None:
        self.keys = keys
        self.jwt = jwt

    def authenticate(self, token: str, client_ip: str | None) -> Principal:
        if looks_like_key(token):
            key = self.keys.verify(token, client_ip)
            return Principal("key", key.prefix, key.owner, frozenset(key.scopes), key.rate_limits)
        if token.count(".") == 2:
            if self.jwt is None:
                raise Unauthorized("JWT is not enabled on this server")
            claims = self.jwt.verify(token)
            scopes = frozenset(s for s in claims.scopes if s in SCOPES)
            return Principal("jwt", claims.subject, claims.subject, scopes)
        raise Unauthorized("malformed credentials: expected an API key (cq_…) or a JWT")
