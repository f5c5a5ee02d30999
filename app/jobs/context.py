"""What the job domain works with: one object holding the per-process services.

Built by the wiring (`app.runtime.build_runtime`, which extends it with identity);
the domain only ever sees this, so it needs neither Flask nor the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from app.jobs.breaker import Breakers
from app.jobs.hostcap import HostSlots
from app.jobs.store import JobStore
from app.settings import Settings
from collectors.base import NetworkPolicy
from collectors.registry import Registry

__all__ = ["JobContext"]


@dataclass
class JobContext:
    settings: Settings
    redis: Redis
    store: JobStore
    registry: Registry
    policy: NetworkPolicy
    breakers: Breakers
    host_slots: HostSlots
