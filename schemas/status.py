"""Status values: the one place they are defined."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CollectorStatus", "JobStatus", "TERMINAL_COLLECTOR", "TERMINAL_JOB"]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class CollectorStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


TERMINAL_JOB = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.PARTIAL,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.EXPIRED,
    }
)
TERMINAL_COLLECTOR = frozenset(
    {
        CollectorStatus.SUCCEEDED,
        CollectorStatus.FAILED,
        CollectorStatus.CANCELLED,
        CollectorStatus.SKIPPED,
    }
)
