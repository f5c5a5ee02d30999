"""The fault tests' set of faults, one every `interval` seconds, in a seeded random order.

Each fault is followed by what an operator (or an orchestrator) would do: a killed or
stopped process is started again, a frozen broker thaws. The order is a seeded shuffle of
the whole set, repeated: every kind happens before any happens twice.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.soak.stack import WORKER_ROLES, Stack

__all__ = ["FAULTS", "Fault", "FaultInjector"]

FAULTS = (
    "kill -9 worker",
    "SIGTERM worker",
    "restart RabbitMQ",
    "restart Redis",
    "freeze broker",
    "kill beat",
)
RESTART_DELAY = 1.0  # an orchestrator's restart is not instant
FREEZE_SECONDS = 5.0
WARM_SHUTDOWN_WAIT = 60.0


@dataclass
class Fault:
    at: float  # seconds into the run
    kind: str
    target: str
    took: float = 0.0  # until the operator's remedy was done
    note: str = ""


class FaultInjector(threading.Thread):
    def __init__(
        self, stack: Stack, rng: random.Random, first: float, interval: float, until: float,
        clock: Callable[[], float],
    ) -> None:  # fmt: skip
        super().__init__(name="faults", daemon=True)
        self.stack, self.rng = stack, rng
        self.first, self.interval, self.until = first, interval, until
        self.now = clock  # seconds into the run
        self.done: list[Fault] = []
        self.stopped = threading.Event()
        self.errors: list[str] = []
        self.plan = self._plan()  # (seconds into the run, fault kind)

    def _plan(self) -> list[tuple[float, str]]:
        times = []
        at = self.first
        while at < self.until:
            times.append(at)
            at += self.interval
        order: list[str] = []
        while len(order) < len(times):
            kinds = list(FAULTS)
            self.rng.shuffle(kinds)
            order += kinds
        return list(zip(times, order, strict=False))

    def run(self) -> None:
        for at, kind in self.plan:
            if self.stopped.wait(max(0.0, at - self.now())):
                return
            fault = Fault(self.now(), kind, "")
            t0 = time.monotonic()
            try:
                self.inject(fault)
            except Exception as exc:
                fault.note = f"{fault.note} error: {type(exc).__name__}: {exc}".strip()
                self.errors.append(f"{kind}: {exc}")
            fault.took = time.monotonic() - t0
            self.done.append(fault)
            print(f"  fault at {fault.at:7.1f}s: {kind} {fault.target} ({fault.took:.1f}s) "
                  f"{fault.note}", flush=True)  # fmt: skip

    def stop(self) -> None:
        self.stopped.set()
        self.join()

    def inject(self, fault: Fault) -> None:
        s = self.stack
        if fault.kind in ("kill -9 worker", "SIGTERM worker", "kill beat"):
            role = "beat" if fault.kind == "kill beat" else self.rng.choice(WORKER_ROLES)
            fault.target = role
            proc = s.procs[role]
            if fault.kind == "SIGTERM worker":
                proc.signal(signal.SIGTERM)
                try:
                    fault.note = f"exit {proc.proc.wait(WARM_SHUTDOWN_WAIT)}"
                except subprocess.TimeoutExpired:
                    proc.kill_group()
                    fault.note = f"no exit within {WARM_SHUTDOWN_WAIT:.0f}s: killed"
            else:
                proc.kill_group()
            time.sleep(RESTART_DELAY)
            s.start_role(role)
        elif fault.kind == "restart RabbitMQ":
            fault.target = "rabbitmq"
            s.rabbit.restart()
        elif fault.kind == "restart Redis":
            fault.target = "redis"
            s.redis.restart()
        elif fault.kind == "freeze broker":
            fault.target = "rabbitmq"
            s.rabbit.pause()
            time.sleep(FREEZE_SECONDS)
            s.rabbit.resume()
            fault.note = f"SIGSTOP {FREEZE_SECONDS:.0f}s"
