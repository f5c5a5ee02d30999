"""JWT bearer tokens from an identity provider (PyJWT).

The key set (``COLLECTQ_JWT_KEYS``, usually from a file; format in `app.jwks`) is
parsed by the settings. Each key is pinned to one algorithm: a token is checked only
with the key its `kid` names and only if its `alg` header equals that key's algorithm. So
`none` never verifies, and an HS256 token "signed" with an RSA public key is
refused before any signature check (the classic HS/RS confusion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from app.errors import Unauthorized
from app.jwks import VerifyKey

__all__ = ["JwtVerifier", "TokenClaims"]

REQUIRED_CLAIMS = ["exp", "nbf", "iss", "aud", "sub"]


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    scopes: tuple[str, ...]


class JwtVerifier:
    def __init__(
        self,
        keys: dict[str, VerifyKey],
        *,
        issuer: str,
        audience: str,
        leeway: int = 30,
        scopes_claim: str = "scope",
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.scopes_claim = scopes_claim

    def verify(self, token: str) -> TokenClaims:
        key = self._key_for(token)
        return self._token_claims(self._decode(token, key))

    def _key_for(self, token: str) -> VerifyKey:
        """The configured key the token's header names, if its algorithm is that key's."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("malformed token") from None
        key = self.keys.get(str(header.get("kid", "")))
        if key is None:
            raise Unauthorized("unknown key id (kid)")
        if header.get("alg") != key.alg:
            raise Unauthorized(f"token algorithm does not match key {key.kid!r}")
        return key

    def _decode(self, token: str, key: VerifyKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[key.alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS, "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not yet valid (nbf)") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("token audience mismatch") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token issuer mismatch") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid token") from None

    def _token_claims(self, claims: dict[str, Any]) -> TokenClaims:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("token subject must be a non-empty string")
        raw = claims.get(self.scopes_claim, "")
        scopes = raw.split() if isinstance(raw, str) else raw
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise Unauthorized(f"the {self.scopes_claim!r} claim must be a string or a list")
        return TokenClaims(subject=sub, scopes=tuple(scopes))
