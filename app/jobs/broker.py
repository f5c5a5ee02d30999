"""The broker side of the job domain: publishing collector messages, reading queue depths."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from app.jobs.names import collector_queue, collector_task
from app.jobs.publisher import ConfirmingPublisher, MessageNacked

if TYPE_CHECKING:
    from app.jobs.context import JobContext

__all__ = [
    "ENQUEUED_AT_HEADER",
    "OWNER_HEADER",
    "PUBLISH_ERRORS",
    "REQUEST_ID_HEADER",
    "confirming_publisher",
    "publish",
    "queue_depths",
]

# When the message was published (unix time): the worker measures its queue wait from it.
ENQUEUED_AT_HEADER = "x_enqueued_at"
# The API request that caused the job, and the job's owner: every log line (app.tasklog),
# Sentry event and span the job causes in the worker names them.
REQUEST_ID_HEADER = "x_request_id"
OWNER_HEADER = "x_owner"

# What a failed publish can raise: kombu wraps most, sockets and amqp leak some.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    KombuError,
    OSError,
    TimeoutError,
    MessageNacked,
)
try:
    from amqp.exceptions import AMQPError

    PUBLISH_ERRORS += (AMQPError,)
except ImportError:  # pragma: no cover - amqp ships with celery[amqp]
    pass
_RETRY_ONCE = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def confirming_publisher(celery: Celery, timeout: float) -> ConfirmingPublisher:
    """The API process's publisher (confirms awaited together, `app.jobs.publisher`)."""
    return ConfirmingPublisher(celery, timeout=timeout, errors=PUBLISH_ERRORS)


def publish(
    celery: Celery,
    rt: JobContext,
    job_id: str,
    collectors: list[str],
    *,
    owner: str,
    request_id: str | None,
) -> None:
    """Publish one message per collector and wait for the broker's confirms (bounded)."""
    timeout = rt.settings.publish_timeout
    headers: dict[str, Any] = {OWNER_HEADER: owner, ENQUEUED_AT_HEADER: time.time()}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id

    def send(producer: Any, **retry: Any) -> None:
        for name in collectors:
            celery.send_task(
                collector_task(name),
                args=[job_id, name],
                task_id=f"{job_id}.{name}",
                queue=collector_queue(name),
                headers=headers,
                producer=producer,
                timeout=timeout,
                confirm_timeout=timeout,
                **retry,
            )

    if rt.publisher is not None:  # the API: confirms awaited together (app.jobs.publisher)
        rt.publisher.publish(send)
        return
    with celery.producer_or_acquire() as producer:
        # One quick reconnect covers a connection the broker dropped while idle; beyond
        # that the caller gets an error (the API a 503), not a hang.
        send(producer, retry=True, retry_policy=_RETRY_ONCE)


def queue_depths(celery: Celery, queues: list[str]) -> dict[str, int | None]:
    """How many ready messages the broker holds per queue (status page, reaper)."""
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
