"""Scheduled collections: records, triggers, beat entries and the tick (no Flask here)."""

from __future__ import annotations

from app.schedules.service import run_finished

__all__ = ["run_finished"]
