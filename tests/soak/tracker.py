"""What became of every accepted job, read from the store while the run goes on.

Retention is short on purpose (a job's record expires `JOB_TTL` after it ends), so the
records cannot all be read at the end: the tracker reads them as they finish, and once
more `RECHECK_AFTER` seconds later (a late redelivery that recorded a second result shows
then). Counting follows the fault tests (`tests.faults.conftest.record_counts`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis

from tests.faults.conftest import TERMINAL, job_records, record_counts

__all__ = ["Job", "Tracker"]

RECHECK_AFTER = 20.0


@dataclass
class Job:
    kind: str
    collectors: list[str]
    accepted_at: float  # seconds into the run
    status: str | None = None  # terminal status, once seen
    finished_seen_at: float | None = None
    rechecked: bool = False
    duplicated: int = 0
    requeued: int = 0
    attempts: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # error types of failed collectors
    vanished_at: float | None = None  # the record was gone before it ended: lost


class Tracker:
    def __init__(self, redis_url: str, t0: float) -> None:
        self.redis_url, self.t0 = redis_url, t0
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.poll_errors = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def accept(self, job_id: str, kind: str, collectors: list[str]) -> None:
        with self.lock:
            self.jobs.setdefault(job_id, Job(kind, collectors, self.now()))

    @property
    def completed(self) -> int:
        with self.lock:
            return sum(j.status is not None for j in self.jobs.values())

    def pending(self) -> list[str]:
        with self.lock:
            return [i for i, j in self.jobs.items() if j.status is None]

    def poll(self) -> None:
        """One pass over the store; a store that does not answer is tried next time."""
        snapshot_at = self.now()
        try:
            records = job_records(self.redis_url)
        except redis.RedisError:
            self.poll_errors += 1
            return
        now = self.now()
        with self.lock:
            for job_id, job in self.jobs.items():
                h = records.get(job_id) or None  # {}: it expired between scan and read
                if job.status is None:
                    if h is None and job.accepted_at < snapshot_at:  # not one accepted since
                        job.vanished_at = job.vanished_at or now
                    elif h is not None and h.get("status") in TERMINAL:
                        self._read(job, h, now)
                elif not job.rechecked and now - (job.finished_seen_at or now) > RECHECK_AFTER:
                    if h is not None:
                        self._read(job, h, now)
                    job.rechecked = True

    def final_pass(self) -> None:
        """At the end: re-read every record still there (what a late redelivery left)."""
        for job in self.jobs.values():
            job.rechecked = False
            job.finished_seen_at = -1e9  # due now
        self.poll()

    @staticmethod
    def _read(job: Job, h: dict[str, str], now: float) -> None:
        if job.status is None:
            job.status, job.finished_seen_at = h["status"], now
            job.vanished_at = None  # a store restarting answered "none" for a moment
        dup, requeued, attempts = record_counts(h)
        job.duplicated = max(job.duplicated, dup)
        job.requeued, job.attempts = max(job.requeued, requeued), attempts
        job.errors = []
        for name in job.collectors:
            result = json.loads(h.get(f"r:{name}") or "{}")
            if result.get("error"):
                job.errors.append(f"{name}:{result['error'].get('type')}")

    # --- the verdict ---------------------------------------------------------------------
    def summary(self) -> dict[str, object]:
        with self.lock:
            jobs = list(self.jobs.values())
            # the jobs to look up in the logs when a check fails
            unaccounted = [
                f"{job_id} ({j.kind}, accepted at {j.accepted_at:.1f} s"
                + (f", gone at {j.vanished_at:.1f} s)" if j.vanished_at else ")")
                for job_id, j in self.jobs.items()
                if j.status is None
            ]
        statuses = Counter(j.status or ("lost" if j.vanished_at else "stuck") for j in jobs)
        attempts: Counter[int] = Counter()
        for j in jobs:
            attempts.update(j.attempts)
        return {
            "accepted": len(jobs),
            "terminal": sum(j.status is not None for j in jobs),
            "lost": sum(j.status is None and j.vanished_at is not None for j in jobs),
            "stuck": sum(j.status is None and j.vanished_at is None for j in jobs),
            "duplicated": sum(j.duplicated for j in jobs),
            "reaper_requeued": sum(j.requeued for j in jobs),
            "statuses": dict(statuses),
            "unaccounted": unaccounted[:20],
            "attempts": dict(sorted(attempts.items())),
            "errors": dict(Counter(e for j in jobs for e in j.errors).most_common()),
            "by_kind": {
                k: dict(Counter(j.status or "unfinished" for j in jobs if j.kind == k))
                for k in sorted({j.kind for j in jobs})
            },
        }
