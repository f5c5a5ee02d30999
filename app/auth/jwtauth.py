"""JWT bearer tokens from an identity provider (PyJWT).

The key set (``COLLECTQ_JWT_KEYS``, usually from a file; format in `app.jwks`) is
parsed by the settings. Each key is pinned to one algorithm: a token is checked only
with the key its `kid` names and only if its `alg` header equals that key's algorithm. So
`none` never verifies, and an HS256 token "signed" with an RSA public key is
refused before any signature check (the classic HS/RS confusion).

A token must also say when it was issued (`iat`, not in the future beyond the
leeway) and live at most `max_lifetime` seconds (`exp - iat`), so a leaked
long-lived token is refused even if the IdP minted it.

The owner of a JWT principal is ``jwt:{issuer id}:{sub}``: namespaced by the issuer
(a short hash of the configured `iss`), so it never equals an API-key owner (which
may not start with ``jwt:``) nor another issuer's subject, and never the admin
index. The subject itself must match `schemas.keys.SUBJECT_PATTERN`.

Every refusal is a `CredentialRejected`: one answer to the client, the reason for the log.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import jwt

from app.auth.failures import CredentialRejected
from app.jwks import VerifyKey
from schemas.keys import JWT_OWNER_PREFIX, SUBJECT_PATTERN

__all__ = ["DEFAULT_MAX_LIFETIME", "JwtVerifier", "TokenClaims", "issuer_id"]

REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "sub"]
DEFAULT_MAX_LIFETIME = 86400
_SUBJECT = re.compile(SUBJECT_PATTERN)


def issuer_id(issuer: str) -> str:
    """A short, stable id of an issuer for owner names (`iss` is a URL, with `:` and `/`)."""
    return hashlib.sha256(issuer.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TokenClaims:
    subject: str  # the token's `sub`, checked
    owner: str  # jwt:{issuer id}:{sub}
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
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.issuer_id = issuer_id(issuer)
        self.audience = audience
        self.leeway = leeway
        self.scopes_claim = scopes_claim
        self.max_lifetime = max_lifetime

    def verify(self, token: str) -> TokenClaims:
        key = self._key_for(token)
        claims = self._decode(token, key)
        self._check_lifetime(claims, key)
        return self._token_claims(claims, key)

    def _key_for(self, token: str) -> VerifyKey:
        """The configured key the token's header names, if its algorithm is that key's."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise CredentialRejected("malformed token") from None
        kid = str(header.get("kid", ""))
        key = self.keys.get(kid)
        if key is None:
            raise CredentialRejected(f"unknown key id (kid) {kid[:64]!r}")
        if header.get("alg") != key.alg:
            raise CredentialRejected(f"token algorithm does not match key {key.kid!r}")
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
                options={"require": REQUIRED_CLAIMS, "strict_aud": False, "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise CredentialRejected(f"token expired (kid {key.kid!r})") from None
        except jwt.ImmatureSignatureError as exc:  # PyJWT: a future `iat` as well as `nbf`
            when = "issued in the future (iat)" if "(iat)" in str(exc) else "not yet valid (nbf)"
            raise CredentialRejected(f"token {when} (kid {key.kid!r})") from None
        except jwt.InvalidAudienceError:
            raise CredentialRejected(f"token audience mismatch (kid {key.kid!r})") from None
        except jwt.InvalidIssuerError:
            raise CredentialRejected(f"token issuer mismatch (kid {key.kid!r})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise CredentialRejected(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidIssuedAtError:
            raise CredentialRejected("token 'iat' is not a number") from None
        except jwt.exceptions.InvalidSubjectError:
            raise CredentialRejected("token subject is not a string") from None
        except jwt.InvalidTokenError as exc:
            raise CredentialRejected(f"invalid token: {type(exc).__name__}") from None

    def _check_lifetime(self, claims: dict[str, Any], key: VerifyKey) -> None:
        # PyJWT checked that both are numbers and that `iat` is not in the future
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > self.max_lifetime:
            raise CredentialRejected(
                f"token lifetime {lifetime:.0f}s exceeds the maximum of {self.max_lifetime}s"
                f" (kid {key.kid!r})"
            )

    def _token_claims(self, claims: dict[str, Any], key: VerifyKey) -> TokenClaims:
        sub = claims.get("sub")
        if not isinstance(sub, str) or _SUBJECT.fullmatch(sub) is None:
            shown = sub[:64] if isinstance(sub, str) else type(sub).__name__
            raise CredentialRejected(f"token subject {shown!r} is not allowed (kid {key.kid!r})")
        raw = claims.get(self.scopes_claim, "")
        scopes = raw.split() if isinstance(raw, str) else raw
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise CredentialRejected(f"the {self.scopes_claim!r} claim must be a string or a list")
        owner = f"{JWT_OWNER_PREFIX}{self.issuer_id}:{sub}"
        return TokenClaims(subject=sub, owner=owner, scopes=tuple(scopes))
