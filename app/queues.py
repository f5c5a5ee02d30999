"""How many ready messages the broker holds per queue (status page, reaper)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.jobs import PUBLISH_ERRORS

__all__ = ["queue_depths"]


def queue_depths(celery: Celery, queues: list[str]) -> dict[str, int | None]:
    depths: dict[str, int | None] = {}
    with celery.connection_for_write() as conn:
        channel: Any = conn.default_channel
        for q in queues:
            try:
                depths[q] = channel.queue_declare(queue=q, passive=True).message_count
            except PUBLISH_ERRORS:
                # Redis: an empty queue has no key. RabbitMQ: no worker declared it yet.
                depths[q] = 0 if conn.transport.driver_type == "redis" else None
                channel = conn.channel()
    return depths
