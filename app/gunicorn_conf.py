"""gunicorn configuration of `collectq api` (``-c python:app.gunicorn_conf``): server hooks.

The master serves the API's metrics on ``COLLECTQ_METRICS_HOST:COLLECTQ_METRICS_PORT``
(a listener of its own, never the public API port): the samples every worker process
wrote to the multiprocess directory, plus the deployment's gauges read at scrape time.
A worker that exits (or is killed) is marked dead, so its live-gauge files go; its
counters stay in the sums (`app.metrics_serve`).

The master also watches the ``COLLECTQ_*_FILE`` secrets (`app.secretfiles`): a changed file
makes it send itself SIGHUP, gunicorn's graceful reload (new workers, which load the settings
afresh; the old ones finish their requests). Every SIGHUP, by hand too, is checked first: a
configuration that no longer loads is refused, and the running workers stay.
"""

from __future__ import annotations

import os
import signal
import warnings
from typing import Any

from app.metrics_serve import mark_dead, process_registry, remove_multiproc_dir, serve_metrics

# The gevent worker monkey-patches after the fork, and the master has imported `ssl` by then
# (prometheus_client, the settings): gevent warns on every worker start. `ssl` is patched in
# place, so what uses it through the module is patched; the modules gevent names as holding
# unpatched names (redis.asyncio, jwt.jwks_client) are never used by collectq
# (docs/decisions.md, "Scheduling: live events and waiting clients"). Forked workers inherit
# this filter; every other warning still reaches the log.
warnings.filterwarnings("ignore", message=r"Monkey-patching ssl after ssl has already been")

__all__ = ["child_exit", "on_exit", "post_worker_init", "when_ready"]

logger_class = "app.gunicornlog.GunicornLogger"  # the logging of every process (app.logs)


def when_ready(server: Any) -> None:
    """The master is up (workers not forked yet): start the metrics listener and the
    secret-file watcher, and check each SIGHUP before gunicorn reloads."""
    from app.metrics_scrape import ScrapeCollector  # the master's only heavy import
    from app.secretfiles import SecretWatcher
    from app.settings import load_settings

    watcher = SecretWatcher()  # before the settings: the contents they are loaded from
    settings = load_settings()
    scrape: ScrapeCollector | None = None
    if settings.metrics_port:
        scrape = ScrapeCollector(settings)
        serve_metrics(settings.metrics_host, settings.metrics_port, process_registry(scrape), "API")
    server.handle_hup = _checked_hup(server.handle_hup, watcher, scrape)
    watcher.start(settings.secret_watch_interval, lambda _: os.kill(os.getpid(), signal.SIGHUP))


def _checked_hup(reload: Any, watcher: Any, scrape: Any) -> Any:
    """gunicorn's SIGHUP handler, run only when the settings load (`approve_reload`)."""
    from app.secretfiles import approve_reload

    def handle_hup() -> None:
        settings = approve_reload(watcher, "API")
        if settings is None:
            return
        if scrape is not None:  # the listener itself stays on its address
            scrape.reconfigure(settings)
        reload()

    return handle_hup


def post_worker_init(worker: Any) -> None:
    """A worker stopping (SIGTERM) ends its event streams first (`app.events.hub.shut_down`):
    their clients resume elsewhere, and the worker does not wait out the graceful timeout."""
    import signal

    from app.events.hub import shut_down

    def handle_exit(sig: int, frame: Any) -> None:
        shut_down()
        worker.handle_exit(sig, frame)

    signal.signal(signal.SIGTERM, handle_exit)
    signal.siginterrupt(signal.SIGTERM, False)


def child_exit(server: Any, worker: Any) -> None:
    mark_dead(worker.pid)


def on_exit(server: Any) -> None:
    remove_multiproc_dir()
