"""The worker entry module: `celery -A app.worker` (worker, beat, Flower).

It only builds the app and exposes `celery_app`; per-process hooks live here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import bootsteps
from celery.signals import (
    beat_init,
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)

from app import create_app
from app.errortracking import init_error_tracking
from app.jobs.names import collector_queue
from app.metrics_worker import connect_worker_metrics
from app.tasklog import connect_task_logging
from app.tracing import BEAT_SERVICE, init_tracing, init_worker_tracing, shutdown_tracing
from app.worker_reload import install_restart
from collectors.base import CollectorError

flask_app = create_app(api_tracing=False)  # tracing starts at the signals below
celery_app = flask_app.extensions["celery"]


class _EventsFlushedByTheLoop(bootsteps.StartStopStep):
    """Task events are published by the consumer's event loop only, never by a pool thread.

    With the threads pool, a pool thread that fills the events buffer (24 events) flushes
    it itself: a confirmed publish on the events connection, which the event loop also
    reads (for AMQP heartbeats). When the loop reads the confirm first, the thread waits
    for it forever while holding the dispatcher's lock, and every thread, the loop
    included, then blocks on that lock: the worker stops (seen in `python -m benchmarks
    fanout` from C=50). With no limit, threads only buffer; the loop flushes soon after
    each event (`Consumer.on_send_event_buffered`), on the connection it reads itself.
    Runs after the Events step at every (re)start of the consumer.
    """

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, c: Any) -> None:
        if c.event_dispatcher is not None:
            c.event_dispatcher.buffer_limit = sys.maxsize


celery_app.steps["consumer"].add(_EventsFlushedByTheLoop)
connect_worker_metrics(celery_app, flask_app.extensions["collectq"])
connect_task_logging()


@setup_logging.connect
def _keep_our_logging(**_: object) -> None:
    """Celery must not reconfigure logging: create_app already did (`app.logs`).

    A receiver of this signal stops Celery's own setup: no root-logger hijack, no colour
    formatter, no task logger handler; Celery's lines reach our handler like any other.
    """


@worker_process_init.connect
def _warm_collectors(**_: object) -> None:
    """Start heavy per-process resources (a browser) in each pool process, after the fork.

    Only for the collectors whose queues this worker consumes; a failure here is
    logged and left to the first job, which reports it as the job's error.
    """
    consumed = set(celery_app.amqp.queues.consume_from or ())
    registry = flask_app.extensions["collectq"].registry
    for name in registry.available_names():
        if collector_queue(name) in consumed:
            try:
                registry.get(name).warm()
            except CollectorError as exc:
                logging.getLogger("collectq.worker").warning(
                    "warming %s failed: %s", name, exc.detail, extra={"collector": name}
                )


@worker_process_shutdown.connect
def _close_collectors(**_: object) -> None:
    flask_app.extensions["collectq"].registry.close()


@worker_init.connect
def _trace_worker(sender: Any, **_: object) -> None:
    init_worker_tracing(celery_app, sender.pool_cls)  # threads/solo: the tasks run here


@worker_process_init.connect
def _observe_pool_process(**_: object) -> None:
    """A prefork pool process: its own Sentry client and tracer provider, after the fork."""
    init_error_tracking(flask_app.extensions["collectq"].settings)
    init_worker_tracing(celery_app)


@worker_process_shutdown.connect
def _flush_traces(**_: object) -> None:
    shutdown_tracing()


@worker_ready.connect
def _restart_on_hup(**_: object) -> None:
    """SIGHUP, or a changed secret file, restarts this worker warmly in place
    (`app.worker_reload`); installed after Celery's own handlers, which it replaces."""
    install_restart(flask_app.extensions["collectq"].settings.secret_watch_interval)


@beat_init.connect
def _trace_beat(**_: object) -> None:
    init_tracing(BEAT_SERVICE)
