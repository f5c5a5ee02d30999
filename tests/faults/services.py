"""A redis-server and a RabbitMQ node of the fault tests' own, on spare loopback ports.

The shared services (6379, 5672) are never touched: every fault test breaks
only these. Both keep their data in a temp dir, so a restart finds it again
(Redis from its AOF, RabbitMQ its durable queues and persistent messages).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RabbitNode", "RedisServer", "port_pair"]

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_pair(offset: int = 20000) -> tuple[int, int]:
    """A free port P with P + offset free too (RabbitMQ's distribution port)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + offset < 65536 and _port_free(port + offset):
            return port, port + offset
        port = 0
    raise RuntimeError("no free port pair")


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout}s")


class RedisServer:
    """redis-server with AOF (everysec) in `root`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.root),
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "", "--maxmemory-policy", "noeviction",
            "--logfile", str(self.root / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, start_new_session=True)
        _wait(self._pong, 15, "redis-server")

    def stop(self) -> None:
        """SIGTERM: redis fsyncs its AOF and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class RabbitNode:
    """A second RabbitMQ node: own node name, ports, data, logs, cookie; no plugins."""

    def __init__(self, root: Path, consumer_timeout_ms: int = 20000) -> None:
        self.root = root
        self.port, self.dist_port = port_pair()
        self.name = f"cqfault{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        for d in ("mnesia", "log", "home"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            f"consumer_timeout = {consumer_timeout_ms}\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )
        (root / "advanced.config").write_text("[].\n")
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq-env.conf").write_text("")

    @property
    def env(self) -> dict[str, str]:
        r = self.root
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            "HOME": str(r / "home"),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(r / "mnesia"),
            "RABBITMQ_LOG_BASE": str(r / "log"),
            "RABBITMQ_CONFIG_FILE": str(r / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(r / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(r / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(r / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(r / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def url(self, vhost: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def beam_pid(self) -> int:
        return int((self.root / "pid").read_text().strip())

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> None:
        log = (self.root / "log" / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait(
            lambda: self._alive() and self._listening()
            and self.ctl("-q", "await_startup", timeout=30).returncode == 0,
            90,
            "rabbitmq node",
        )  # fmt: skip

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            out = (self.root / "log" / "server.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"rabbitmq-server exited: {out}")
        return True

    def stop(self) -> None:
        """Stop the node cleanly (durable data stays), or kill it after a while."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.resume()  # a paused node cannot stop
            self.ctl("stop", timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        _wait(lambda: not self._listening(), 30, "rabbitmq port release")

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        os.kill(self.beam_pid, signal.SIGSTOP)

    def resume(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.beam_pid, signal.SIGCONT)

    def add_vhost(self, vhost: str) -> None:
        for args in (
            ("add_vhost", vhost),
            ("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"),
        ):
            done = self.ctl(*args)
            if done.returncode != 0:
                raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr}")
