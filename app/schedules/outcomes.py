"""What a schedule's tick came to: the `outcome` label of collectq_schedule_fires_total."""

from __future__ import annotations

__all__ = ["FIRED", "MISSED", "OUTCOMES", "SKIPPED_CONCURRENCY", "SKIPPED_WINDOW"]

FIRED = "fired"
SKIPPED_CONCURRENCY = "skipped_concurrency"  # max_concurrent runs still going
SKIPPED_WINDOW = "skipped_window"  # outside the active window, or before start_at
MISSED = "missed"  # due but never run in time (beat or the maintenance worker was down)
OUTCOMES = (FIRED, SKIPPED_CONCURRENCY, SKIPPED_WINDOW, MISSED)
