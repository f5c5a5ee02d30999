"""The baseline for the end-to-end bench: bare Celery, a no-op task, a Redis result.

Same broker, same worker pool/concurrency/prefetch/acks_late as collectq's worker.
Configured from BENCH_BROKER_URL / BENCH_RESULT_URL.
"""

from __future__ import annotations

import os

from celery import Celery

# What every baseline worker shares with collectq's (benchmarks/peer.py uses it too).
WORKER_CONF = {
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_transport_options": {"confirm_publish": True},
    "worker_hijack_root_logger": False,
}

app = Celery("bare")
app.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL"),
    result_backend=os.environ.get("BENCH_RESULT_URL"),
    task_default_queue="bare",
    result_expires=300,
    **WORKER_CONF,
)


@app.task(name="bare.noop")
def noop() -> dict[str, bool]:
    return {"ok": True}
