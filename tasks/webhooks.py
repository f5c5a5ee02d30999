"""Tasks on queue ``webhooks``: thin adapters over `app.webhooks`.

``jobs.finished(job_id)`` runs the finalizer of a final job (`app.webhooks.finalize`);
``webhooks.deliver(job_id, delivery_id, attempts_before)`` makes one attempt of one
delivery and publishes the next attempt itself when one is due (backoff in the
message's countdown), so each message is one attempt.
"""

from __future__ import annotations

import logging

from celery import Celery, Task
from flask import Flask

from app.jobs.names import DELIVER_TASK, FINISHED_TASK, WEBHOOKS_QUEUE
from app.runtime import runtime
from app.webhooks.deliver import Again, deliver
from app.webhooks.finalize import finish, publish_delivery

__all__ = ["register_webhook_tasks"]

log = logging.getLogger("collectq.tasks")


def register_webhook_tasks(celery: Celery, flask_app: Flask) -> None:
    def finished_task(task: Task, job_id: str) -> list[str]:  # type: ignore[type-arg]
        return finish(runtime(flask_app), task.app, job_id)

    def deliver_task(
        task: Task,  # type: ignore[type-arg]
        job_id: str,
        delivery_id: str,
        attempts_before: int,
    ) -> str:
        outcome = deliver(runtime(flask_app), job_id, delivery_id, attempts_before)
        if isinstance(outcome, Again):
            publish_delivery(
                task.app, job_id, delivery_id, outcome.attempt, countdown=outcome.delay
            )
            return "retrying"
        return outcome

    common = {"bind": True, "queue": WEBHOOKS_QUEUE, "ignore_result": True, "acks_late": True}
    celery.task(finished_task, name=FINISHED_TASK, **common)  # type: ignore[call-overload]
    celery.task(deliver_task, name=DELIVER_TASK, **common)  # type: ignore[call-overload]
