"""Users in equal steps, with each step's own statistics (the bench's locust run).

    locust -f benchmarks/locustfile.py,benchmarks/locustshape.py --headless \\
        --users 100 --spawn-rate 50 --run-time 80s ...

Ramps to --users in COLLECTQ_LOAD_STEPS equal steps (default 10) spread over --run-time, so
10, 20, …, 100 users for 8 s each above. Every request is also counted per step, and at
the end each step's users, time span, requests, failures, 429s and response-time
percentiles are written as JSON to COLLECTQ_LOAD_STEPS_OUT (if set): where the latency
knees, without the blur of locust's 10 s rolling percentiles.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events

__all__ = ["UserSteps"]

_STEPS: list[dict[str, Any]] = []  # one per step, appended as the shape enters it


class UserSteps(LoadTestShape):
    use_common_options = True  # read --users, --spawn-rate and --run-time

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        opts: Any = self.runner.environment.parsed_options
        steps = int(os.environ.get("COLLECTQ_LOAD_STEPS", "10"))
        top = opts.num_users or steps
        rate, total = opts.spawn_rate or top, opts.run_time or 60
        step = int(self.get_run_time() / (total / steps))
        if step >= steps:
            return None
        users = round(top * (step + 1) / steps)
        if len(_STEPS) <= step:
            _STEPS.append({"users": users, "start": time.time(), "times": [], "fail": 0, "429": 0})
        return users, rate


@events.request.add_listener
def _count(name: str, response_time: float, exception: Any, **_: Any) -> None:
    if not _STEPS:
        return
    row = _STEPS[-1]
    if exception is not None:
        row["fail"] += 1
    elif name.endswith("[429]"):
        row["429"] += 1
    else:
        row["times"].append(response_time)


@events.quitting.add_listener
def _write(**_: Any) -> None:
    out = os.environ.get("COLLECTQ_LOAD_STEPS_OUT")
    if not out or not _STEPS:
        return
    ends = [s["start"] for s in _STEPS[1:]] + [time.time()]
    rows = []
    for row, end in zip(_STEPS, ends, strict=True):
        times = sorted(row["times"])
        rows.append(
            {
                "users": row["users"],
                "start": row["start"],
                "end": end,
                "ok": len(times),
                "failures": row["fail"],
                "rate_limited": row["429"],
                "req_s": round((len(times) + row["fail"] + row["429"]) / (end - row["start"]), 1),
                **{f"p{p}": _pct(times, p / 100) for p in (50, 95, 99)},
            }
        )
    Path(out).write_text(json.dumps(rows, indent=2))


def _pct(values: list[float], p: float) -> float | None:
    return round(values[min(len(values) - 1, int(len(values) * p))], 1) if values else None
