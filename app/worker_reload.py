"""A worker's warm restart in place: SIGHUP, or a changed secret file (`app.secretfiles`).

Celery 5's own SIGHUP handler (``celery.apps.worker.install_worker_restart_handler``) stops
the worker warmly and then runs ``os.execv(sys.executable, [sys.executable, *sys.argv])``;
under ``python -m celery`` (how `collectq worker` runs it) ``sys.argv[0]`` is
``celery/__main__.py``, which fails when run as a script ("attempted relative import with no
known parent package"): the worker stopped and never came back. It is also installed only
when stdout is not a terminal. This handler does the same with ``-m celery``: stop taking
work, finish what is running (tasks are acked late, so what was only prefetched goes back to
the queue), then exec the same command line in the same process id, which loads the settings
afresh. A configuration that no longer loads is refused before anything stops.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any

from celery import platforms
from celery.platforms import EX_OK
from celery.worker import state

from app.secretfiles import SecretWatcher, approve_reload

__all__ = ["install_restart"]

_restarting = False


def _exec_again() -> None:
    """Run after the warm shutdown (atexit): the same worker, started over."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # sockets and pipes die with this process
    argv = [sys.executable, "-m", "celery", *sys.argv[1:]]
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and arguments


def install_restart(interval: float) -> SecretWatcher:
    """SIGHUP restarts this worker warmly (after `approve_reload`); the secret files are
    polled every `interval` seconds and a change sends that SIGHUP."""
    watcher = SecretWatcher()
    main_pid = os.getpid()

    def restart(*_: Any) -> None:
        global _restarting
        if os.getpid() != main_pid:  # a pool process forked since: not ours to restart
            return
        if _restarting or approve_reload(watcher, "worker") is None:
            return
        _restarting = True
        watcher.stop()
        atexit.register(_exec_again)
        state.should_stop = EX_OK  # type: ignore[assignment]  # SIGTERM's warm shutdown

    platforms.signals["SIGHUP"] = restart
    watcher.start(interval, lambda _: os.kill(os.getpid(), signal.SIGHUP))
    return watcher
