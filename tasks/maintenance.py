"""Maintenance tasks, on queue ``maintenance``: thin adapters over `app.jobs.reaper` (and
the `key.expiring` pass, `app.webhooks.keynotices`)."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, Task
from flask import Flask

from app.jobs.finalize import republish_overdue
from app.jobs.names import MAINTENANCE_QUEUE, REAP_TASK
from app.jobs.reaper import reap_exclusively
from app.rediskeys import RedisKeys
from app.runtime import runtime
from app.webhooks.keynotices import notify_flagged_keys

__all__ = ["register_maintenance_tasks"]


def register_maintenance_tasks(celery: Celery, flask_app: Flask) -> None:
    """Register ``maintenance.reap`` (run by beat every ``REAP_INTERVAL``): the reaper, then
    the finished outbox's overdue entries, then (every ``KEY_CHECK_INTERVAL``) the
    `key.expiring` webhooks."""

    def reap_task(task: Task) -> dict[str, Any]:  # type: ignore[type-arg]
        rt = runtime(flask_app)
        # the beat's last tick (collectq_beat_last_tick_timestamp_seconds), even when
        # another reaper holds the lock and this pass is skipped
        rt.redis.set(RedisKeys(rt.settings.redis_prefix).beat_last_tick, repr(time.time()))
        report = reap_exclusively(rt, celery)
        # final jobs whose jobs.finished was lost (app.jobs.finalize): announced again
        report["finished_republished"] = republish_overdue(
            rt.store, celery, grace=rt.settings.finished_grace, timeout=rt.settings.publish_timeout
        )
        report["key_notices"] = notify_flagged_keys(rt, rt.keys, celery)
        return report

    celery.task(  # type: ignore[call-overload]
        reap_task,
        name=REAP_TASK,
        bind=True,
        queue=MAINTENANCE_QUEUE,
        acks_late=False,  # a lost pass is redone by the next beat tick
        ignore_result=True,
    )
