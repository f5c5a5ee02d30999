"""One answer for every credential that does not authenticate.

A wrong signature, an unknown `kid` or key prefix, a revoked, expired or
rotated-out key, a key used outside its networks: the client gets the same
401 body and `WWW-Authenticate` for all of them, so a stolen or guessed
credential learns nothing about itself (docs/decisions.md, "Hardening:
identity"). The real reason travels with the exception, for the server log only.
"""

from __future__ import annotations

from app.errors import Unauthorized

__all__ = ["INVALID_CREDENTIALS", "CredentialRejected"]

INVALID_CREDENTIALS = "invalid credentials"


class CredentialRejected(Unauthorized):
    """A credential was presented and refused; `reason` is for the log, never the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(INVALID_CREDENTIALS)
        self.reason = reason
