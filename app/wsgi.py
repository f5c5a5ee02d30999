"""The WSGI entry module for gunicorn: `app.wsgi:application`."""

from __future__ import annotations

from app import create_app

application = create_app()
