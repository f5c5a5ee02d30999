"""The verdict of a soak: jobs (none lost, duplicated or stuck), leaks, Redis retention.

Leak criterion: for each of our roles (the API, every worker, beat), the median RSS and
the median open fds of the *last window* (the last 20% of the load) against those of the
*warm-up window* (`warm_up_window`: after the first round of faults in a full run; else
10%-20% of the load: the first 10% is start-up, Chromium's first page, lazy imports).
Growth must stay under the run's `LeakBound`: 10% (fds: or 10 more) from `FULL_RUN`
seconds on; a short run's windows are a few samples of processes still warming up, so it
only catches gross leaks (50%; fds: or 30 more).
Retention: after the horizon (`JOB_TTL` + 30 s: the first jobs' records expired), the
median key count and used memory of the last window against those of the first window
after the horizon; the capped event streams apart (their MAXLEN bounds them).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.soak.sampler import CAPPED_STREAMS, Sample
from tests.soak.stack import WORKER_ROLES

__all__ = [
    "LEAK_ROLES",
    "Check",
    "Window",
    "leak_rows",
    "reaper_counts",
    "redis_rows",
    "warm_up_window",
]

LEAK_ROLES = ("api", *WORKER_ROLES, "beat")
FULL_RUN = 900  # seconds of load from which the 10% bound holds


@dataclass(frozen=True)
class LeakBound:
    limit: float  # relative growth allowed
    # Connection pools open sockets on demand (a thread's first Redis or broker call): a
    # few fds more late in the run are not a leak, which adds one per job (thousands).
    fd_slack: int

    @staticmethod
    def of(load_s: float) -> LeakBound:
        return LeakBound(0.10, 10) if load_s >= FULL_RUN else LeakBound(0.50, 30)

    def __str__(self) -> str:
        return f"RSS +{self.limit:.0%}, fds +{self.limit:.0%} or +{self.fd_slack}"


RETENTION_LIMIT = 0.30  # fault backlogs (a broker restart) swell the store for a while
STREAM_SLACK = 1.10  # approximate MAXLEN trims whole nodes only


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    def values(
        self, samples: Iterable[Sample], get: Callable[[Sample], float | None]
    ) -> list[float]:
        out = []
        for s in samples:
            v = get(s) if self.start <= s.t <= self.end else None
            if v is not None:
                out.append(float(v))
        return out

    def median(self, samples: list[Sample], get: Callable[[Sample], float | None]) -> float | None:
        values = self.values(samples, get)
        return statistics.median(values) if values else None

    def __str__(self) -> str:
        return f"{self.start:.0f}-{self.end:.0f} s"


def _growth(base: float | None, last: float | None) -> float | None:
    return None if not base or last is None else last / base - 1


def warm_up_window(load_s: float, plan: list[tuple[float, str]], kinds: int) -> Window:
    """The baseline: after the first round of faults when the run has two rounds or more
    (the peak concurrency a fault causes sets the pools' high-water marks, which pools
    never give back; the second round repeats every fault, so what grows per fault or
    per job still shows); else 10%-20% of the load."""
    if len(plan) >= 2 * kinds:
        start = plan[kinds - 1][0] + 30  # the round's last fault and its remedy
        return Window(start, start + 0.1 * load_s)
    return Window(0.1 * load_s, 0.2 * load_s)


def leak_rows(
    samples: list[Sample], load_s: float, warm: Window
) -> tuple[Window, Window, list[dict[str, Any]]]:
    last = Window(0.8 * load_s, load_s)
    rows = []
    for role in LEAK_ROLES:
        row: dict[str, Any] = {"role": role}
        for what in ("rss", "fds"):
            get = _usage(what, role)
            base, end = warm.median(samples, get), last.median(samples, get)
            row[what] = (base, end, _growth(base, end))
        rows.append(row)
    return warm, last, rows


def _usage(what: str, role: str) -> Callable[[Sample], float | None]:
    def get(s: Sample) -> float | None:
        value: int | None = getattr(s, what).get(role)
        return value

    return get


def leak_checks(rows: list[dict[str, Any]], bound: LeakBound) -> list[Check]:
    checks = []
    for row in rows:
        for what in ("rss", "fds"):
            base, end, growth = row[what]
            slack = what == "fds" and end is not None and end - base <= bound.fd_slack
            ok = growth is not None and (growth < bound.limit or slack)
            detail = (
                "no samples" if growth is None
                else f"{_fmt(what, base)} → {_fmt(what, end)} ({growth:+.1%})"
            )  # fmt: skip
            checks.append(Check(f"{row['role']} {what} growth", ok, detail))
    return checks


def _fmt(what: str, v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 2**20:.0f} MiB" if what == "rss" else f"{v:.0f}"


def redis_rows(
    samples: list[Sample], horizon: float, load_s: float
) -> tuple[Window, Window, dict[str, tuple[float | None, float | None, float | None]]]:
    span = max(0.15 * load_s, 20.0)
    after, last = Window(horizon, horizon + span), Window(load_s - span, load_s)

    def bounded_memory(s: Sample) -> float | None:
        if s.redis_memory is None or s.capped_memory is None:
            return None
        return float(s.redis_memory - s.capped_memory)

    out: dict[str, tuple[float | None, float | None, float | None]] = {}
    for name, get in (
        ("keys", lambda s: s.redis_keys),
        ("used_memory", lambda s: s.redis_memory),
        ("used_memory - capped streams", bounded_memory),
    ):
        base, end = after.median(samples, get), last.median(samples, get)
        out[name] = (base, end, _growth(base, end))
    return after, last, out


def redis_checks(
    samples: list[Sample], rows: dict[str, tuple[float | None, float | None, float | None]]
) -> list[Check]:
    checks = []
    for name in ("keys", "used_memory - capped streams"):
        base, end, growth = rows[name]
        ok = growth is not None and growth < RETENTION_LIMIT
        detail = "no samples" if growth is None else (
            f"{base:.0f} → {end:.0f} ({growth:+.1%}, limit {RETENTION_LIMIT:.0%})"
        )  # fmt: skip
        checks.append(Check(f"Redis {name} bounded", ok, detail))
    for stream, cap in CAPPED_STREAMS.items():
        longest = max((s.capped_len.get(stream, 0) for s in samples), default=0)
        checks.append(
            Check(
                f"Redis stream {stream} within its MAXLEN",
                longest <= cap * STREAM_SLACK,
                f"longest {longest} entries, MAXLEN ~{cap}",
            )
        )
    return checks


def reaper_counts(logs: list[Path]) -> dict[str, int]:
    """What the reaper did, summed from its workers' "reaper acted" log lines (JSON)."""
    total = {"passes_acting": 0, "requeued": 0, "failed": 0, "expired": 0}
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if "reaper acted" not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            total["passes_acting"] += 1
            for key in ("requeued", "failed", "expired"):
                total[key] += len(event.get(key) or [])
    return total


def breaker_transitions(samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Per origin, how often the sampler saw its breaker open (a new `opened_at`: a
    failed half-open probe opens it again) and close. Openings and closings within one
    sample interval are missed: a lower bound."""
    out: dict[str, dict[str, int]] = {}
    before: dict[str, tuple[str, str]] = {}
    for s in samples:
        for origin, (state, opened) in s.breakers.items():
            prev_state, prev_opened = before.get(origin, ("closed", ""))
            counts = out.setdefault(origin, {"opened": 0, "closed": 0})
            if state != "closed" and opened != prev_opened:
                counts["opened"] += 1
            if state == "closed" and prev_state != "closed":
                counts["closed"] += 1
            before[origin] = (state, opened)
    return {origin: c for origin, c in out.items() if any(c.values())}
