"""What `collectq up` runs (its children, their roles, ports and log files) and what its
banner says about them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from app.cli.flowercmd import flower_access
from app.cli.upoutput import ChildLog
from app.jobs.names import MAINTENANCE_QUEUE, WEBHOOKS_QUEUE, collector_queue
from app.runtime import load_collectors
from app.settings import Settings, as_environ, configured, redact_url

__all__ = ["DATA_DIR", "LOG_DIR", "Child", "Plan", "plan_up", "port_free", "running_as_root"]

DATA_DIR = Path(".collectq")
LOG_DIR = DATA_DIR / "logs"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def running_as_root() -> bool:
    return os.geteuid() == 0


@dataclass
class Child:
    name: str
    argv: list[str]
    log: ChildLog
    env: dict[str, str] = field(default_factory=dict)  # this child's own variables
    after_workers: bool = False  # started once the workers are ready (or WORKER_PATIENCE)
    health: str | None = None  # a URL that answers 200 once this child serves
    optional: bool = False  # up runs on without it when it keeps failing
    given_up: bool = False
    proc: subprocess.Popen[bytes] | None = None
    failures: list[float] = field(default_factory=list)
    restart_at: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which
        # then stops the children in order instead of all at once.
        own = {f"{var}_FILE": None for var in self.env}  # a file would win over the variable
        merged = {k: v for k, v in env.items() if k not in own} | self.env
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            self.argv,
            env=merged,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None  # noqa: S101 - PIPE above
        self.log.follow(self.proc.stdout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


@dataclass
class Plan:
    """What `up` runs and its banner rows."""

    children: list[Child]
    rows: list[tuple[str, str]]  # the banner's (name, value) rows


def plan_up(settings: Settings, embedded_redis: int | None) -> Plan:
    registry = load_collectors(settings)
    try:
        names, infos = registry.available_names(), registry.infos()
    finally:
        registry.close()
    cli = [sys.executable, "-m", "app.cli"]
    argvs = {"api": [*cli, "api"]}
    argvs |= {f"worker {n}": [*cli, "worker", "-q", "-Q", collector_queue(n)] for n in names}
    argvs["worker maintenance"] = [*cli, "worker", "-q", "-Q", MAINTENANCE_QUEUE, "-c", "1"]
    # a job's end (jobs.finished) and its webhook deliveries: I/O-bound, the generic threads pool
    argvs["worker webhooks"] = [*cli, "worker", "-q", "-Q", WEBHOOKS_QUEUE]
    # beat ticks the reaper (maintenance.reap) and the schedules; its state is in Redis
    # (redbeat) and a second beat anywhere only waits as a standby
    argvs["beat"] = [*cli, "beat", "-q"]
    base = f"http://{settings.api_host}:{settings.api_port}"
    rows = [("API", base), ("docs", f"{base}/docs")]
    health = {"api": f"{base}/health"}
    access = flower_access(settings)
    refusal = access.refusal or _flower_port_taken(settings)
    if refusal is None:
        argvs["flower"] = [*cli, "flower"]
        flower = f"http://{settings.flower_host}:{settings.flower_port}"
        rows.append(("Flower", f"{flower}  ({access.state})"))
        health["flower"] = f"{flower}/healthcheck"  # answers without credentials
    else:
        rows.append(("Flower", f"not started: {refusal}"))
    ports = _worker_metrics_ports(settings, [r for r in argvs if r.startswith("worker ")])
    rows += _metrics_rows(settings, ports)
    rows += _facts(settings, embedded_redis)
    rows.append(("processes", ", ".join(argvs)))
    rows += [
        ("note", f"collector {i.name} unavailable: {i.reason}") for i in infos if not i.available
    ]
    if running_as_root():
        rows.append(
            ("note", "running as root: Celery advises against it for workers (said once here)")
        )
    width = max(len(role) for role in argvs)
    children = [
        Child(role, argv, ChildLog(role, LOG_DIR, width), _metrics_env(ports.get(role)))
        for role, argv in argvs.items()
    ]
    for child in children:
        child.health = health.get(child.name)
        # Flower asks the workers for their state when it starts: after them, it finds them.
        # It is monitoring, not the service: up runs on without it.
        child.after_workers = child.optional = child.name == "flower"
    return Plan(children, rows)


def _worker_metrics_ports(settings: Settings, workers: list[str]) -> dict[str, int]:
    """Each worker node gets a metrics listener of its own: the ports from
    COLLECTQ_WORKER_METRICS_PORT on or, when it is not set, from the one after the API's
    COLLECTQ_METRICS_PORT on; none when that is off (0) or WORKER_METRICS_PORT=0."""
    if configured("worker_metrics_port"):
        first = settings.worker_metrics_port
    else:
        first = settings.metrics_port + 1 if settings.metrics_port else 0
    if not first:
        return {}
    return {role: first + i for i, role in enumerate(workers) if first + i <= 65535}


def _metrics_env(port: int | None) -> dict[str, str]:
    return {} if port is None else as_environ(worker_metrics_port=port)


def _metrics_rows(settings: Settings, ports: dict[str, int]) -> list[tuple[str, str]]:
    host = settings.metrics_host
    api = f"http://{host}:{settings.metrics_port}/metrics (API)" if settings.metrics_port else ""
    taken = [f"{role} ({port})" for role, port in ports.items() if not port_free(host, port)]
    workers = ""
    if ports:
        low, high = min(ports.values()), max(ports.values())
        workers = f"workers on {host}:{low}-{high} (one port each, in the order of processes)"
    rows = [("metrics", "; ".join(filter(None, [api, workers])))] if api or workers else []
    if taken:
        rows.append(
            ("note", f"metrics ports in use, those listeners will fail: {', '.join(taken)}")
        )
    return rows


def _flower_port_taken(settings: Settings) -> str | None:
    if port_free(settings.flower_host, settings.flower_port):
        return None
    return (
        f"port {settings.flower_port} on {settings.flower_host} is in use "
        "(set COLLECTQ_FLOWER_PORT)"
    )


def _facts(settings: Settings, embedded_redis: int | None) -> list[tuple[str, str]]:
    """The banner's rows on the profile, authentication, data and logs."""
    profile = settings.env
    if settings.is_dev and settings.net_allow:
        profile += f" (DEV PROFILE: targets on {', '.join(settings.net_allow)} are allowed)"
    auth = (
        f"AUTH IS OFF: anyone who reaches {settings.api_host} may use the API as admin; "
        "set COLLECTQ_AUTH=on (and create a key: collectq keys create) to require keys"
        if not settings.auth
        else "on: API keys required (collectq keys create)"
    )
    data = (
        f"{DATA_DIR.resolve()} (embedded Redis on 127.0.0.1:{embedded_redis})"
        if embedded_redis is not None
        else f"Redis {redact_url(settings.redis_url)}, broker {redact_url(settings.broker_url)}"
    )
    logs = f"{LOG_DIR.resolve()}/<process>.log (warnings and errors also here, as 'process | line')"
    return [("profile", profile), ("auth", auth), ("data", data), ("logs", logs)]
