"""Why the job domain ended or postponed a collector: errors recorded in the envelope.

They extend the collector's own tree (`collectors.base`), so the envelope's
`error` has one shape whoever decided it::

    CollectorError (collectors.base)
    ├── TimeLimitExceeded     time_limit        a soft or hard time limit ended the call
    ├── RedeliveryLimit       redelivery_limit  every delivery died before recording
    ├── Lost                  lost              the reaper requeued it too often
    ├── CircuitOpen           circuit_open      retryable; the host's breaker is open
    └── HostBusy              host_busy         retryable; the host's concurrency cap is full
"""

from __future__ import annotations

import time
from typing import Any

from collectors.base import CollectorError

__all__ = ["CircuitOpen", "HostBusy", "Lost", "RedeliveryLimit", "TimeLimitExceeded"]


class TimeLimitExceeded(CollectorError):
    type = "time_limit"
    retryable = False


class RedeliveryLimit(CollectorError):
    """Every delivery of this collector died without recording (a poison message)."""

    type = "redelivery_limit"
    retryable = False


class Lost(CollectorError):
    """No delivery of the collector finished, however often it was requeued."""

    type = "lost"


class CircuitOpen(CollectorError):
    type = "circuit_open"
    retryable = True

    def __init__(self, host: str, half_open_at: float) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(half_open_at))
        super().__init__(
            f"circuit for {host} is open after repeated failures; half-opens at {when}",
            retry_after=max(0.0, half_open_at - time.time()),
        )
        self.half_open_at = when

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "half_open_at": self.half_open_at}


class HostBusy(CollectorError):
    type = "host_busy"
    retryable = True
