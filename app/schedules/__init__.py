"""Scheduled collections: records, triggers, beat entries and the tick (no Flask here).

`run_finished` (the finalizer's hook) is loaded on first use, so that importing a light
module of this package (`app.schedules.outcomes`, for app.metrics) does not pull in the
whole service and the job domain behind it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_finished"]


def __getattr__(name: str) -> Any:
    if name == "run_finished":
        from app.schedules.service import run_finished

        return run_finished
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
