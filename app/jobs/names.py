"""Queue and task names: the one place they are spelled.

The API names a collector's queue without importing the Celery configuration;
`celeryconfig` routes by these same names.
"""

from __future__ import annotations

__all__ = [
    "COLLECTOR_QUEUE_PREFIX",
    "DELIVER_TASK",
    "FINISHED_TASK",
    "MAINTENANCE_QUEUE",
    "REAP_TASK",
    "SCHEDULE_FIRE_TASK",
    "WEBHOOKS_QUEUE",
    "collector_queue",
    "collector_task",
]

MAINTENANCE_QUEUE = "maintenance"
REAP_TASK = "maintenance.reap"
# A schedule's tick, sent by beat (redbeat entry) to the maintenance queue: it is short
# and the maintenance worker runs in every deployment (docs/decisions.md).
SCHEDULE_FIRE_TASK = "schedules.fire"
# A job became final (app.jobs.finalize), and each webhook delivery: both on one queue.
WEBHOOKS_QUEUE = "webhooks"
FINISHED_TASK = "jobs.finished"
DELIVER_TASK = "webhooks.deliver"
COLLECTOR_QUEUE_PREFIX = "collect."


def collector_queue(name: str) -> str:
    """The queue that carries collector `name`'s tasks."""
    return f"{COLLECTOR_QUEUE_PREFIX}{name}"


def collector_task(name: str) -> str:
    """The registered task name of collector `name`."""
    return f"collect.{name}"
