"""Retry delays: exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt `attempt + 1`.

    Full jitter (uniform in ``[0, min(cap, base * 2**(attempt-1))]``) spreads
    retries of many workers apart; a target's Retry-After is a floor, capped
    at `cap` so one answer cannot park a task for hours.
    """
    ceiling: float = min(cap, base * 2 ** max(0, attempt - 1))
    delay: float = rand() * ceiling
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, cap))
    return delay
