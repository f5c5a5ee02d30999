"""Status values and the rule that decides a job's final status: the one place of both.

The store's Lua scripts are rendered from these (app/jobs/lua.py), and a test pins
the Lua decision to `final_job_status` on every combination.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "TERMINAL_COLLECTOR",
    "TERMINAL_JOB",
    "CollectorStatus",
    "JobStatus",
    "final_job_status",
]


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


def final_job_status(statuses: Iterable[str]) -> JobStatus | None:
    """The job's final status from its collectors', or None while one is unfinished.

    All succeeded → succeeded; all cancelled → cancelled; none succeeded → failed;
    otherwise partial.
    """
    states = list(statuses)
    if not all(s in TERMINAL_COLLECTOR for s in states):
        return None
    ok = states.count(CollectorStatus.SUCCEEDED)
    if ok == len(states):
        return JobStatus.SUCCEEDED
    if states.count(CollectorStatus.CANCELLED) == len(states):
        return JobStatus.CANCELLED
    return JobStatus.FAILED if ok == 0 else JobStatus.PARTIAL
