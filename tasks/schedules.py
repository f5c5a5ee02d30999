"""``schedules.fire``: a schedule's tick, sent by beat (redbeat entry) to the maintenance
queue; a thin adapter over `app.schedules.service.fire` that counts the outcome."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

from app.jobs.names import MAINTENANCE_QUEUE, SCHEDULE_FIRE_TASK
from app.metrics import SCHEDULE_FIRES, SCHEDULE_LAG
from app.runtime import runtime
from app.schedules.outcomes import MISSED
from app.schedules.service import fire

__all__ = ["register_schedule_tasks"]


def register_schedule_tasks(celery: Celery, flask_app: Flask) -> None:
    def fire_task(
        task: Task,  # type: ignore[type-arg]
        schedule_id: str,
        due: float | None = None,
        jitter: float = 0,
        queued: bool = False,
    ) -> dict[str, Any]:
        result = fire(runtime(flask_app), celery, schedule_id, due, jitter=jitter, queued=queued)
        if result.missed:
            SCHEDULE_FIRES.labels(MISSED).inc(result.missed)
        if result.outcome is not None:
            SCHEDULE_FIRES.labels(result.outcome).inc()
        if result.lag is not None:
            SCHEDULE_LAG.observe(result.lag)
        if result.retry_in is not None:  # policy `queue`: the tick waits for a free slot
            task.apply_async(
                kwargs={"schedule_id": schedule_id, "due": due, "queued": True},
                countdown=result.retry_in,
            )
        return {"outcome": result.outcome, "job_id": result.job_id, "missed": result.missed}

    celery.task(  # type: ignore[call-overload]
        fire_task,
        name=SCHEDULE_FIRE_TASK,
        bind=True,
        queue=MAINTENANCE_QUEUE,
        acks_late=False,  # a tick lost with its worker is not fired twice
        ignore_result=True,
    )
