"""Celery wiring: one Celery app per Flask app, kept in ``app.extensions["celery"]``."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

import celeryconfig
from app.runtime import runtime
from tasks.collect import register_collector_tasks
from tasks.maintenance import register_maintenance_tasks
from tasks.schedules import register_schedule_tasks
from tasks.webhooks import register_webhook_tasks

__all__ = ["celery_init_app"]


def celery_init_app(app: Flask) -> Celery:
    rt = runtime(app)

    class FlaskTask(Task):  # type: ignore[type-arg]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery: Celery = Celery(app.name, task_cls=FlaskTask)
    names = rt.registry.available_names()
    celery.config_from_object(celeryconfig.build(rt.settings, names))
    register_collector_tasks(celery, app, rt.settings, names)
    register_maintenance_tasks(celery, app)
    register_schedule_tasks(celery, app)
    register_webhook_tasks(celery, app)
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
