"""Flower, the Celery monitoring UI: the one rule for who may reach it, and how it is run.

`collectq flower` and `collectq up` (which starts `collectq flower` as a child and says in
its banner whether Flower is open) both decide with `flower_access`.

`collectq flower` runs Flower as its child (`run_flower`) and starts it again, with fresh
settings, when a ``COLLECTQ_*_FILE`` secret changes or on SIGHUP: Flower holds no state of
its own (it rebuilds its view from the workers' events), and its password comes from the
settings, which only this parent reads (`flower_env`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.secretfiles import SecretWatcher, approve_reload
from app.settings import Settings, is_loopback_host

__all__ = ["FlowerAccess", "flower_access", "flower_argv", "flower_env", "run_flower"]

log = logging.getLogger("collectq.flower")


@dataclass(frozen=True)
class FlowerAccess:
    """How Flower may run: behind basic auth, open (loopback, not hardened), or not at all."""

    basic_auth: str | None = None  # user:password[,user:password]; None: open
    refusal: str | None = None  # why Flower must not start (None: it may)

    @property
    def state(self) -> str:
        """The access in a few words, for a banner or a log line."""
        if self.refusal is not None:
            return f"not started: {self.refusal}"
        if self.basic_auth:
            return "basic auth; its /metrics and /healthcheck answer without"
        return "OPEN: loopback only; COLLECTQ_FLOWER_BASIC_AUTH=user:password to require a login"


def flower_access(settings: Settings) -> FlowerAccess:
    """Flower shows task arguments and can revoke tasks: it runs behind basic auth when
    COLLECTQ_FLOWER_BASIC_AUTH is set, open only on loopback in the dev profile, and never
    open in staging/prod or on a non-loopback address."""
    if settings.flower_basic_auth:
        return FlowerAccess(basic_auth=settings.flower_basic_auth)
    if settings.env in ("staging", "prod"):
        return FlowerAccess(
            refusal=f"COLLECTQ_FLOWER_BASIC_AUTH: required in the {settings.env} profile "
            "(Flower shows task arguments and can revoke tasks; it never runs open)"
        )
    if not is_loopback_host(settings.flower_host):
        return FlowerAccess(
            refusal="COLLECTQ_FLOWER_BASIC_AUTH: required when Flower listens beyond loopback"
        )
    return FlowerAccess()


def flower_env(environ: Mapping[str, str], access: FlowerAccess) -> dict[str, str]:
    """The environment Flower runs with: none of the caller's FLOWER_* (Flower reads its
    options from those; ours come from the settings), and the credentials in
    FLOWER_BASIC_AUTH (the environment, not argv: `ps` shows argv)."""
    env = {k: v for k, v in environ.items() if not k.startswith("FLOWER_")}
    if access.basic_auth:
        env["FLOWER_BASIC_AUTH"] = access.basic_auth
    return env


def flower_argv(settings: Settings, port: int | None = None) -> list[str]:
    """The interpreter's argv for Flower on COLLECTQ_FLOWER_HOST and `port` (default
    COLLECTQ_FLOWER_PORT)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app.worker",
        "flower",
        f"--address={settings.flower_host}",
        f"--port={port or settings.flower_port}",
    ]


def run_flower(settings: Settings, port: int | None) -> int:
    """Run Flower until it exits or this process is told to stop (SIGTERM, SIGINT: passed
    on, Flower's exit status returned); SIGHUP or a changed secret file start it again with
    the settings loaded afresh, unless they do not load or would leave Flower open."""
    watcher = SecretWatcher()  # before the first start: the contents it runs with
    wake, hup = threading.Event(), threading.Event()
    stop: list[int] = []

    def on_hup(*_: Any) -> None:
        hup.set()
        wake.set()

    def on_stop(signum: int, _: Any) -> None:
        stop.append(signum)
        wake.set()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    child = _start(settings, port)
    watcher.start(settings.secret_watch_interval, lambda _: on_hup())
    while True:
        wake.wait(0.5)
        wake.clear()
        if stop:
            child.send_signal(stop[0])
            return _exit_status(child.wait())
        if child.poll() is not None:
            return _exit_status(child.returncode)
        if hup.is_set():
            hup.clear()
            fresh = approve_reload(watcher, "flower")
            if fresh is None:
                continue
            refusal = flower_access(fresh).refusal
            if refusal is not None:
                log.error("flower: not restarting: %s", refusal)
                continue
            _stop(child)
            child = _start(fresh, port)


def _start(settings: Settings, port: int | None) -> subprocess.Popen[bytes]:
    argv = flower_argv(settings, port)
    env = flower_env(os.environ, flower_access(settings))
    return subprocess.Popen(argv, env=env)  # noqa: S603 - our own interpreter and arguments


def _stop(child: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    child.terminate()
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention
