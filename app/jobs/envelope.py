"""The result envelope and a collector's result body: built here and nowhere else.

The envelope is the one format of a job everywhere (API, CLI, webhooks); its
schema is `schemas.job.EnvelopeSchema`. The store builds it from the job hash,
`collectq collect` from results it ran in-process.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from collectors.base import CollectorError
from schemas import SCHEMA_VERSION

__all__ = ["Stopwatch", "build_envelope", "failed_body", "succeeded_body", "utcnow"]


def utcnow() -> str:
    """ISO 8601 UTC with milliseconds, the one timestamp format of the API."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_envelope(
    *,
    job_id: str,
    status: str,
    target: str,
    collectors: list[str],
    created_at: str,
    started_at: str | None,
    finished_at: str | None,
    labels: dict[str, str],
    schedule_id: str | None,
    results: dict[str, Any],
    callback: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": job_id,
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "target": target,
        "collectors": collectors,
        "created_at": created_at,
        "started_at": started_at,
        "finished_at": finished_at,
        "labels": labels,
        "schedule_id": schedule_id,
        "callback": callback,  # {"url", "on"} of the job's webhook (app.webhooks), or None
        "results": results,
    }


def failed_body(error: CollectorError, **extra: Any) -> dict[str, Any]:
    """A collector's result body when it produced no data (status and attempts aside)."""
    return {**extra, "data": None, "artifacts": [], "error": error.to_dict()}


def succeeded_body(
    data: dict[str, Any], artifacts: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A collector's result body with its data and the metadata of its artifacts."""
    return {**extra, "data": data, "artifacts": artifacts, "error": None}


class Stopwatch:
    """When a collector ran and for how long, as the result body reports it."""

    def __init__(self) -> None:
        self.started_at = utcnow()
        self._t0 = time.perf_counter()

    def timing(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "finished_at": utcnow(),
            "duration_ms": round((time.perf_counter() - self._t0) * 1000, 1),
        }
