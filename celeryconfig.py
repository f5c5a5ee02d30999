"""Celery settings, built from the one Settings object (no second source of truth).

`build()` returns a plain mapping for ``celery.config_from_object``; nothing is
read from the environment here.
"""

from __future__ import annotations

from typing import Any

from kombu import Exchange, Queue

from app.jobs.names import (
    DELIVER_TASK,
    FINISHED_TASK,
    MAINTENANCE_QUEUE,
    REAP_TASK,
    SCHEDULE_FIRE_TASK,
    WEBHOOKS_QUEUE,
    collector_queue,
    collector_task,
)
from app.rediskeys import RedisKeys
from app.settings import Settings

__all__ = ["build"]


def build(settings: Settings, collectors: list[str]) -> dict[str, Any]:
    exchange = Exchange("collectq", type="direct", durable=True)
    queues = [collector_queue(n) for n in collectors] + [MAINTENANCE_QUEUE, WEBHOOKS_QUEUE]
    amqp = settings.broker_url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")
    return {
        "broker_url": settings.broker_url,
        "result_backend": None,  # results live in the job store, not Celery's backend
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "timezone": "UTC",
        "enable_utc": True,
        # Delivery: ack after the task ran, requeue when the worker process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.soft_time_limit,
        "task_time_limit": settings.hard_time_limit,
        "task_default_queue": MAINTENANCE_QUEUE,
        "task_default_exchange": exchange.name,
        "task_default_routing_key": MAINTENANCE_QUEUE,
        "task_queues": [Queue(q, exchange, routing_key=q, durable=True) for q in queues],
        "task_routes": [
            {collector_task(n): {"queue": collector_queue(n)} for n in collectors}
            | {REAP_TASK: {"queue": MAINTENANCE_QUEUE}}
            | {SCHEDULE_FIRE_TASK: {"queue": MAINTENANCE_QUEUE}}
            | {FINISHED_TASK: {"queue": WEBHOOKS_QUEUE}, DELIVER_TASK: {"queue": WEBHOOKS_QUEUE}}
        ],
        # beat: redbeat (schedules in Redis, one active beat by a lock) that reconnects
        # after a broker restart (see app/beat.py)
        "beat_scheduler": "app.beat:Scheduler",
        "beat_max_loop_interval": settings.beat_max_interval,
        "redbeat_redis_url": settings.redis_url,
        "redbeat_redis_options": {},  # not the broker's transport options
        "redbeat_key_prefix": RedisKeys(settings.redis_prefix).redbeat_prefix,
        "redbeat_lock_key": RedisKeys(settings.redis_prefix).beat_lock,
        "redbeat_lock_timeout": settings.beat_lock_timeout,
        "beat_schedule": {
            "reap": {
                "task": REAP_TASK,
                "schedule": settings.reap_interval,
                # a tick nobody ran in time is superseded by the next one
                "options": {"expires": settings.reap_interval},
            }
        },
        "task_create_missing_queues": False,
        "task_publish_retry": False,  # the API answers 503 itself instead of blocking
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker waits out a broker restart
        # AMQP heartbeats: a hung broker (or network) is noticed within 2 intervals.
        "broker_heartbeat": settings.broker_heartbeat,
        "broker_connection_timeout": settings.publish_timeout,
        "broker_transport_options": (
            {"confirm_publish": True}
            if amqp
            else {"visibility_timeout": settings.hard_time_limit * 4}
        ),
        "broker_pool_limit": 10,
        "worker_send_task_events": True,
        # Not on: a task-sent event is a second confirmed publish per collector on the
        # submit path (it doubled its broker round trips). Flower sees a task from the
        # worker's task-received on; the job envelope says `queued` before that.
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        # Celery 6 default: a task whose broker connection died is cancelled and, being
        # unacked, redelivered; recording is idempotent, so the re-run is safe.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # SIGTERM is a warm shutdown (running tasks finish, exit 0). On SIGQUIT (cold),
        # running tasks get this long before their messages are put back.
        "worker_soft_shutdown_timeout": settings.soft_shutdown_timeout,
    }
