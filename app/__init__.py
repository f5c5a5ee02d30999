"""collectq application package: the Flask factory and the process wiring."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, api_tracing: bool = True) -> Flask:
    """Build the Flask app (API + Celery wiring) from `settings` (default: the environment)."""
    from app.factory import create_app as _create

    return _create(settings, api_tracing=api_tracing)
