"""The JWT key set (``COLLECTQ_JWT_KEYS``): parsed and checked once, by the settings.

A leaf module, shared by the settings (which refuse an unusable key set at start,
naming the variable) and identity (`app.auth.jwtauth`, which verifies tokens with
it). The format is JSON::

    {"keys": [
      {"kid": "2026-01", "alg": "HS256", "k": "<base64url secret, >= 32 bytes>"},
      {"kid": "idp-a",   "alg": "RS256", "pem": "-----BEGIN PUBLIC KEY-----…"},
      {"kid": "idp-b",   "alg": "ES256", "kty": "EC", "crv": "P-256", "x": "…", "y": "…"}]}

Each key is pinned to one algorithm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

__all__ = ["ALGORITHMS", "KeySetError", "VerifyKey", "parse_key_set"]

# alg → the JWK key type it needs
ALGORITHMS = {"HS256": "oct", "RS256": "RSA", "ES256": "EC"}
MIN_HMAC_BYTES = 32
MIN_RSA_BITS = 2048


class KeySetError(ValueError):
    """The configured key set is unusable (the message never contains key material)."""


@dataclass(frozen=True)
class VerifyKey:
    kid: str
    alg: str
    key: Any


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
