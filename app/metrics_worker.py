"""A worker node's metrics: its listener and its presence, hooked to Celery's signals.

Exposure (docs/decisions.md, "Observability: worker metrics exposure"): the pool
processes of a node write multiprocess files (`app.metrics_serve`), the node's main
process serves their sum on ``COLLECTQ_METRICS_HOST:COLLECTQ_WORKER_METRICS_PORT``
(one port per node; ``0`` = no listener), and Prometheus scrapes each node.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown

from app.metrics_presence import Presence
from app.metrics_serve import mark_dead, process_registry, serve_metrics
from app.rediskeys import RedisKeys
from app.runtime import Runtime

__all__ = ["connect_worker_metrics"]


def connect_worker_metrics(celery: Celery, rt: Runtime) -> None:
    """Start the node's listener and presence once it is ready; clean up at the end."""
    presence: list[Presence] = []

    def ready(sender: Any = None, **_: Any) -> None:
        settings = rt.settings
        if settings.worker_metrics_port:
            registry = process_registry()
            serve_metrics(settings.metrics_host, settings.worker_metrics_port, registry, "worker")
        queues = sorted(celery.amqp.queues.consume_from or ())
        node = str(getattr(sender, "hostname", None) or f"pid{os.getpid()}")
        beacon = Presence(rt.redis, RedisKeys(settings.redis_prefix), node, queues)
        beacon.start()
        presence.append(beacon)

    def shutdown(**_: Any) -> None:
        # the directory stays: pool processes may still be finishing; the next start of a
        # worker removes the directories of servers that are gone (`use_multiproc_dir`)
        for beacon in presence:
            beacon.stop()

    def process_gone(**_: Any) -> None:
        mark_dead(os.getpid())  # in the pool process itself, as it exits

    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
    worker_process_shutdown.connect(process_gone, weak=False)
