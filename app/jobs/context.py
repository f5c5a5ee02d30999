"""What the job domain works with: one object holding the per-process services.

Built by the wiring (`app.runtime.build_runtime`, which extends it with identity);
the domain only ever sees this, so it needs neither Flask nor the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis import Redis

from app.jobs.breaker import Breakers
from app.jobs.hostcap import HostSlots
from app.jobs.publisher import ConfirmingPublisher
from app.jobs.store import JobStore
from app.settings import Settings
from collectors.base import NetworkPolicy
from collectors.registry import Registry

__all__ = ["JobContext", "JobObserver"]


class JobObserver:
    """What the domain reports as jobs move; this base observes nothing (tests, the CLI's
    local run), `app.metrics.MetricsObserver` counts. Every call must be cheap."""

    def submitted(self, collectors: Sequence[str]) -> None:
        """A job was accepted with these collectors."""

    def waited(self, queue: str, seconds: float) -> None:
        """A message waited this long in `queue` (publish or retry ETA → task start)."""

    def started(self, collector: str) -> None:
        """A delivery began a run of `collector` (an attempt)."""

    def ran(self, collector: str, outcome: str, seconds: float) -> None:
        """A run ended: outcome `succeeded`, `failed` or `retrying`."""

    def errored(self, collector: str, error: str) -> None:
        """A run ended with, or a collector was failed for, the error of this type."""

    def finished(self, collector: str, status: str) -> None:
        """A collector reached a terminal status (recorded, so counted once)."""


@dataclass
class JobContext:
    settings: Settings
    redis: Redis
    store: JobStore
    registry: Registry
    policy: NetworkPolicy
    breakers: Breakers
    host_slots: HostSlots
    observer: JobObserver = field(default_factory=JobObserver, kw_only=True)
    # the API's: publisher confirms awaited together across requests (app.jobs.publisher);
    # None elsewhere (a worker's requeue publishes through Celery's producer pool)
    publisher: ConfirmingPublisher | None = field(default=None, kw_only=True)
