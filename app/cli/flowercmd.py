"""Flower, the Celery monitoring UI: the one rule for who may reach it, and how it is run.

`collectq flower` and `collectq up` (which starts `collectq flower` as a child and says in
its banner whether Flower is open) both decide with `flower_access`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from app.settings import Settings, is_loopback_host

__all__ = ["FlowerAccess", "flower_access", "flower_argv", "flower_env"]


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
