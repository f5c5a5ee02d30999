"""Time-ordered identifiers (ULID layout, Crockford base32).

Sorting ids as strings sorts them by creation time, which the job index uses
for cursor pagination and retention.
"""

from __future__ import annotations

import secrets
import time

__all__ = ["new_id", "id_floor"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str, now: float | None = None) -> str:
    """`prefix` + a 26-character ULID for `now` (seconds since the epoch)."""
    ms = int((time.time() if now is None else now) * 1000)
    return prefix + _b32(ms, 10) + _b32(secrets.randbits(80), 16)


def id_floor(prefix: str, at: float) -> str:
    """The smallest id that `new_id(prefix, at)` could return."""
    return prefix + _b32(int(at * 1000), 10) + "0" * 16
