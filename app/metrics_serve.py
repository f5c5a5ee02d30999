"""Where metrics are served: the multiprocess directory, the listeners, dead-process cleanup.

prometheus_client picks how a process stores samples when it is first imported: in files
under ``PROMETHEUS_MULTIPROC_DIR`` if that variable is set, in memory otherwise. So
``collectq api`` and ``collectq worker`` set it (`use_multiproc_dir`) before the server
starts, to a fresh directory of that server (``<COLLECTQ_METRICS_DIR or tmp>/<role>-<pid>``;
the pid survives the exec). Every process of the server (gunicorn workers, Celery pool
processes) writes its own files there; the server's one listener sums them:

- API: the gunicorn master (`app.gunicorn_conf`) serves ``COLLECTQ_METRICS_HOST:PORT`` with
  the per-process samples plus the deployment's gauges (`app.metrics_scrape`); never on the
  public API port.
- worker node: its main process serves ``COLLECTQ_METRICS_HOST:WORKER_METRICS_PORT`` (when
  set) and keeps the node's presence in Redis (`app.metrics_presence`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from prometheus_client.registry import Collector

from app.settings import Settings

__all__ = [
    "MULTIPROC_VAR",
    "mark_dead",
    "multiproc_dir",
    "process_registry",
    "remove_multiproc_dir",
    "serve_metrics",
    "use_multiproc_dir",
]

log = logging.getLogger("collectq.metrics")

MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"
_DIR_NAME = "collectq-metrics"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def use_multiproc_dir(settings: Settings, role: str) -> Path:
    """Give this server a fresh metrics directory and export it (before the exec).

    Directories of servers that are gone (their pid is dead) are removed on the way: a
    restarted server must not sum the files of its previous life.
    """
    base = Path(settings.metrics_dir or Path(tempfile.gettempdir()) / _DIR_NAME)
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob(f"{role}-*"):
        pid = old.name.removeprefix(f"{role}-")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = base / f"{role}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.environ[MULTIPROC_VAR] = str(path)
    return path


def multiproc_dir() -> str | None:
    """This server's metrics directory, if it runs in multiprocess mode."""
    return os.environ.get(MULTIPROC_VAR) or None


def remove_multiproc_dir() -> None:
    """At the server's clean exit (its files describe processes that are all gone)."""
    path = multiproc_dir()
    if path:
        shutil.rmtree(path, ignore_errors=True)


def process_registry(*extra: Collector) -> CollectorRegistry:
    """The registry a listener serves: every process's samples (multiprocess mode) or this
    process's own, plus `extra` collectors."""
    path = multiproc_dir()
    if path is None:
        registry = REGISTRY
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    for collector in extra:
        registry.register(collector)
    return registry


def serve_metrics(host: str, port: int, registry: CollectorRegistry, what: str) -> bool:
    """Serve `registry` on host:port from a daemon thread; False (logged) if it cannot bind.

    A port already taken does not stop the server it belongs to: the API or the worker
    keeps working, and Prometheus reports the target down.
    """
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("%s metrics listener not started on %s:%s: %s", what, host, port, exc)
        return False
    log.info("%s metrics on http://%s:%s/metrics", what, host, port)
    return True


def mark_dead(pid: int) -> None:
    """A process of this server ended: drop its live-gauge files (counters and histograms
    stay, so totals survive it: prometheus_client's multiprocess semantics)."""
    if multiproc_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
