"""Celery beat's scheduler, made to survive a broker restart.

Celery's scheduler keeps one broker connection and one producer for its whole
life and, with publish retries off (``task_publish_retry``: the API answers 503
rather than block), never revives them: after RabbitMQ restarts, every tick
fails with "Server unexpectedly closed connection" until beat itself restarts
(celery/celery#3409, #4635). The reaper's ticks stop with it, so a job that
needed the reaper would wait forever.

Here a tick that fails drops the connection and producer; the next tick
opens new ones (waiting out the broker as ``_ensure_connected`` does).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

__all__ = ["ReconnectingMixin", "Scheduler"]

log = logging.getLogger("collectq.beat")


class ReconnectingMixin:
    """Drop the scheduler's cached connection and producer after a failed send."""

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        try:
            return super().apply_async(  # type: ignore[misc]
                entry, producer=producer, advance=advance, **kwargs
            )
        except Exception:
            self.reset_connection()
            raise

    def reset_connection(self) -> None:
        # `producer` and `connection` are cached properties: popping them from the
        # instance dict makes the next access build fresh ones.
        self.__dict__.pop("producer", None)
        connection = self.__dict__.pop("connection", None)
        if connection is not None:
            try:
                connection.collect()  # release the dead socket without talking to it
            except Exception:  # it is being thrown away
                log.debug("beat: discarding the old connection failed", exc_info=True)
        log.warning("beat: send failed, reconnecting to the broker for the next tick")


class Scheduler(ReconnectingMixin, PersistentScheduler):
    """The file-backed scheduler (`-s FILE`), reconnecting after a failed send."""
