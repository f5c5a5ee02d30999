"""The worker entry module: `celery -A app.worker` (worker, beat, Flower).

It only builds the app and exposes `celery_app`; per-process hooks live here.
"""

from __future__ import annotations

from celery.signals import setup_logging, worker_process_shutdown

from app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]


@setup_logging.connect
def _keep_our_logging(**_: object) -> None:
    """Celery must not reconfigure logging: create_app already did."""


@worker_process_shutdown.connect
def _close_collectors(**_: object) -> None:
    flask_app.extensions["collectq"].registry.close()
