"""Who is calling. Every job is stored with its owner.

Until API keys/JWT land (the security issue), all callers are one owner,
``public``, and reads are not filtered by owner.
"""

from __future__ import annotations

__all__ = ["PUBLIC_OWNER", "current_owner", "owner_filter"]

PUBLIC_OWNER = "public"


def current_owner() -> str:
    """The owner new jobs are recorded under."""
    return PUBLIC_OWNER


def owner_filter() -> str | None:
    """The owner reads are restricted to; None means every job is visible."""
    return None
