"""The compose stack of `make test-deploy`, driven with docker-compose through podman's socket.

Health checks: podman schedules them through systemd, absent here, so a thread runs
`podman healthcheck run` on every container of the project every few seconds (without it
`depends_on: condition: service_healthy` would wait forever).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOCKET = "unix:///run/podman/podman.sock"  # tests/deploy/setup.sh starts podman's service there
FILES = ("docker-compose.yml", "tests/deploy/compose.test.yml")


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 600, **kw) -> str:
    """Run a command; its stdout (stderr passes through unless captured by the caller)."""
    done = subprocess.run(
        list(argv), check=False, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def succeeds(argv: Sequence[str], timeout: float = 120) -> bool:
    done = subprocess.run(list(argv), check=False, capture_output=True, timeout=timeout)
    return done.returncode == 0


class Stack:
    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = {"DOCKER_HOST": SOCKET, **os.environ, **env, "COMPOSE_PROJECT_NAME": project}
        self._stop = threading.Event()
        self._health: threading.Thread | None = None

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        files = [a for f in FILES for a in ("-f", f)]
        return run(
            ["docker-compose", *files, *args], check=check, timeout=timeout, env=self.env, cwd=ROOT
        )

    def containers(self) -> dict[str, str]:
        """name -> service of this project's containers (running or not)."""
        out = run(
            [
                "podman",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--format",
                '{{.Names}} {{index .Labels "com.docker.compose.service"}}',
            ]
        )
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def of(self, service: str) -> list[str]:
        return sorted(n for n, s in self.containers().items() if s == service)

    def health(self, name: str) -> str:
        out = run(["podman", "inspect", name], check=False)
        if not out.strip():
            return "gone"
        state = json.loads(out)[0]["State"]
        if not state.get("Running"):
            return "exited"
        hc = state.get("Health") or state.get("Healthcheck") or {}
        return str(hc.get("Status") or "running")

    def _drive_health(self, every: float) -> None:
        while not self._stop.is_set():
            for name in self.containers():
                run(["podman", "healthcheck", "run", name], check=False, timeout=60)
            self._stop.wait(every)

    def stop_health_loop(self) -> None:
        self._stop.set()

    def start_health_loop(self, every: float = 3.0) -> None:
        self._health = threading.Thread(target=self._drive_health, args=(every,), daemon=True)
        self._health.start()

    def wait_healthy(self, timeout: float) -> dict[str, str]:
        """Every container running and, where it has a check, healthy; else raise."""
        deadline = time.monotonic() + timeout
        while True:
            states = {n: self.health(n) for n in self.containers()}
            bad = {n: s for n, s in states.items() if s not in ("healthy", "running")}
            if not bad and states:
                return states
            if time.monotonic() > deadline:
                raise RuntimeError(f"not healthy after {timeout:.0f} s: {bad}")
            time.sleep(2)

    def exec(self, service: str, *argv: str) -> str:
        return run(["podman", "exec", self.of(service)[0], *argv])

    def ip(self, service: str) -> str:
        return self.ip_of(self.of(service)[0])

    def ip_of(self, name: str) -> str:
        nets = json.loads(run(["podman", "inspect", name]))[0]["NetworkSettings"]["Networks"]
        return str(next(iter(nets.values()))["IPAddress"])

    def logs(self, name: str) -> str:
        done = subprocess.run(["podman", "logs", name], check=False, capture_output=True, text=True)
        return done.stdout + done.stderr

    def down(self) -> None:
        self.compose("down", "-v", "-t", "0", "--remove-orphans", check=False, timeout=300)
