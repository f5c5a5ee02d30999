"""JWT bearer tokens from an identity provider (PyJWT).

The key set (``COLLECTQ_JWT_KEYS``, usually from a file) is JSON::

    {"keys": [
      {"kid": "2026-01", "alg": "HS256", "k": "<base64url secret, >= 32 bytes>"},
      {"kid": "idp-a",   "alg": "RS256", "pem": "-----BEGIN PUBLIC KEY-----…"},
      {"kid": "idp-b",   "alg": "ES256", "kty": "EC", "crv": "P-256", "x": "…", "y": "…"}]}

Each key is pinned to one algorithm: a token is checked only with the key its
`kid` names and only if its `alg` header equals that key's algorithm. So
`none` never verifies, and an HS256 token "signed" with an RSA public key is
refused before any signature check (the classic HS/RS confusion).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.errors import Unauthorized

__all__ = ["ALGORITHMS", "JwtVerifier", "KeySetError", "TokenClaims", "parse_key_set"]

# alg → the JWK key type it needs
ALGORITHMS = {"HS256": "oct", "RS256": "RSA", "ES256": "EC"}
MIN_HMAC_BYTES = 32
MIN_RSA_BITS = 2048
REQUIRED_CLAIMS = ["exp", "nbf", "iss", "aud", "sub"]


class KeySetError(ValueError):
    """The configured key set is unusable (the message never contains key material)."""


@dataclass(frozen=True)
class VerifyKey:
    kid: str
    alg: str
    key: Any


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    scopes: tuple[str, ...]


def _load_entry(i: int, entry: Any) -> VerifyKey:
    kid, alg = _kid_and_alg(i, entry)
    key = _load_key(kid, alg, entry)
    _check_strength(kid, alg, key)
    return VerifyKey(kid, alg, key)


def _kid_and_alg(i: int, entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise KeySetError(f"keys[{i}] must be an object")
    kid, alg = entry.get("kid"), entry.get("alg")
    if not isinstance(kid, str) or not kid:
        raise KeySetError(f"keys[{i}]: kid is required")
    if alg not in ALGORITHMS:
        raise KeySetError(f"key {kid!r}: alg must be one of {', '.join(ALGORITHMS)}")
    return kid, alg


def _load_key(kid: str, alg: str, entry: dict[str, Any]) -> Any:
    """The public key (or HMAC secret) of one entry: a PEM, or else a JWK."""
    if "pem" in entry:
        if alg == "HS256":
            raise KeySetError(f"key {kid!r}: an HS256 key is a secret 'k', not a PEM")
        try:
            return load_pem_public_key(str(entry["pem"]).encode())
        except ValueError:
            raise KeySetError(f"key {kid!r}: pem is not a public key") from None
    kty = ALGORITHMS[alg]
    if entry.get("kty", kty) != kty:
        raise KeySetError(f"key {kid!r}: kty must be {kty} for {alg}")
    try:
        return jwt.PyJWK({**entry, "kty": kty}, algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, KeyError, TypeError):
        raise KeySetError(f"key {kid!r}: not a valid {kty} JWK") from None


def _check_strength(kid: str, alg: str, key: Any) -> None:
    if alg == "HS256" and (not isinstance(key, bytes) or len(key) < MIN_HMAC_BYTES):
        raise KeySetError(f"key {kid!r}: an HS256 secret needs at least {MIN_HMAC_BYTES} bytes")
    if alg == "RS256" and not (isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS):
        raise KeySetError(f"key {kid!r}: RS256 needs an RSA public key of >= {MIN_RSA_BITS} bits")
    if alg == "ES256" and not (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        raise KeySetError(f"key {kid!r}: ES256 needs a P-256 public key")


def parse_key_set(raw: str) -> dict[str, VerifyKey]:
    """Parse and check a key set; KeySetError says what is wrong (never the key)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise KeySetError('not JSON; expected {"keys": [...]}') from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise KeySetError('expected {"keys": [...]} with at least one key')
    keys: dict[str, VerifyKey] = {}
    for i, entry in enumerate(entries):
        k = _load_entry(i, entry)
        if k.kid in keys:
            raise KeySetError(f"duplicate kid {k.kid!r}")
        keys[k.kid] = k
    return keys


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
