"""Tasks on queue ``webhooks``: thin adapters over `app.webhooks`.

``jobs.finished(job_id)`` runs the finalizer of a final job (`app.webhooks.finalize`);
``webhooks.deliver(job_id, delivery_id, attempts_before)`` makes one attempt of one
delivery and publishes the next attempt itself when one is due (backoff in the
message's countdown), so each message is one attempt.
"""

from __future__ import annotations

import logging
import time

from celery import Celery, Task
from celery.exceptions import Reject
from flask import Flask

from app.jobs.broker import PUBLISH_ERRORS
from app.jobs.names import DELIVER_TASK, FINISHED_TASK, WEBHOOKS_QUEUE
from app.runtime import runtime
from app.webhooks.deliver import Again, deliver
from app.webhooks.finalize import finish, publish_delivery

__all__ = ["register_webhook_tasks"]

log = logging.getLogger("collectq.tasks")

REQUEUE_PAUSE = 1.0  # s before a message whose retry could not be published is requeued


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
            try:
                publish_delivery(
                    task.app, job_id, delivery_id, outcome.attempt, countdown=outcome.delay
                )
            except PUBLISH_ERRORS as exc:
                # back to the queue: when it comes back, `deliver` sees the retry was never
                # scheduled and schedules it (the delivery is not left `retrying` forever)
                log.warning("webhook retry not published, requeued", extra={"error": str(exc)})
                time.sleep(REQUEUE_PAUSE)
                raise Reject(str(exc), requeue=True) from exc
            return "retrying"
        return outcome

    common = {"bind": True, "queue": WEBHOOKS_QUEUE, "ignore_result": True, "acks_late": True}
    celery.task(finished_task, name=FINISHED_TASK, **common)  # type: ignore[call-overload]
    celery.task(deliver_task, name=DELIVER_TASK, **common)  # type: ignore[call-overload]
