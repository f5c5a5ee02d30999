"""`python -m tests.soak` (`make soak`): the chaos soak of issue 17 (README "Soak").

Environment: SOAK_SECONDS (load duration, default 1800), SOAK_SEED (default: from the
clock, printed), SOAK_RATE (jobs/s, default 2.5), SOAK_REPORT_DIR (where soak.md and
soak.png go; default .collectq/soak, `docs` for the committed report).
Exit status 1 on any lost, duplicated or stuck job, a leak, unbounded retention, or a
fault whose remedy failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from tests.conftest import ROOT
from tests.soak.checks import (
    FULL_RUN,
    Check,
    LeakBound,
    breaker_transitions,
    leak_checks,
    leak_rows,
    reaper_counts,
    redis_checks,
    redis_rows,
    warm_up_window,
)
from tests.soak.faults import FAULTS, FaultInjector
from tests.soak.load import Load
from tests.soak.report import Outcome, plot, results_table, write_markdown
from tests.soak.sampler import Sampler, fd_census
from tests.soak.stack import Stack, running_stack, soak_settings
from tests.soak.targets import Targets, running_targets
from tests.soak.tracker import Tracker

SAMPLE_INTERVAL = 3.0
SAMPLES = ROOT / ".collectq" / "soak" / "samples.json"  # every sample of the last run


def _params() -> dict[str, Any]:
    seconds = int(os.environ.get("SOAK_SECONDS", "1800"))
    seed = int(os.environ.get("SOAK_SEED") or time.time_ns() % 1_000_000)
    job_ttl = 60 if seconds < FULL_RUN else 120
    interval = min(120.0, max(20.0, seconds / 6))
    return {
        "seconds": seconds,
        "seed": seed,
        "rate (jobs/s)": float(os.environ.get("SOAK_RATE", "2.5")),
        "fault interval (s)": interval,
        "first fault (s)": max(interval, 0.2 * seconds),  # after the warm-up window
        "sample interval (s)": SAMPLE_INTERVAL,
        "JOB_TTL (s)": job_ttl,
        "leak bound": str(LeakBound.of(seconds)),
    }


def main() -> int:
    params = _params()
    seconds = int(params["seconds"])
    report_dir = Path(os.environ.get("SOAK_REPORT_DIR") or ROOT / ".collectq" / "soak")
    report_dir = report_dir if report_dir.is_absolute() else ROOT / report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="collectq-soak-"))
    print(f"soak: {params}; processes' logs in {tmp}", flush=True)
    env = soak_settings(int(params["JOB_TTL (s)"]))
    with running_targets() as targets, running_stack(tmp, env) as stack:
        outcome = run(stack, targets, params, seconds)
    params["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    outcome.params = {
        "command": f"SOAK_SECONDS={seconds} make soak"
        + (f" SOAK_REPORT_DIR={asked}" if (asked := os.environ.get("SOAK_REPORT_DIR")) else ""),
        **params,
        "settings": " ".join(f"{k.removeprefix('COLLECTQ_')}={v}" for k, v in env.items()
                             if "PLUGINS" not in k),
    }  # fmt: skip
    write_markdown(outcome, report_dir / "soak.md", "soak.png")
    SAMPLES.parent.mkdir(parents=True, exist_ok=True)
    SAMPLES.write_text(json.dumps([dataclasses.asdict(s) for s in outcome.samples]))
    plot(outcome.samples, outcome.faults, report_dir / "soak.png",
         f"collectq soak: {seconds} s, seed {params['seed']}")  # fmt: skip
    print("\n".join(results_table(outcome)))
    for c in outcome.checks:
        print(f"  {'pass' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    print(f"report: {report_dir / 'soak.md'}, {report_dir / 'soak.png'}; samples: {SAMPLES}")
    if outcome.passed:
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    print(f"soak FAILED; the processes' logs stay in {tmp}")
    return 1


def run(stack: Stack, targets: Targets, params: dict[str, Any], seconds: int) -> Outcome:
    """Load and faults for `seconds`, the drain, the checks."""
    assert stack.api is not None
    rng = random.Random(params["seed"])
    t0 = time.monotonic()
    tracker = Tracker(stack.redis.url, t0)
    sampler = Sampler(stack, tracker, SAMPLE_INTERVAL)
    load = Load(stack.api, targets, params["rate (jobs/s)"], random.Random(rng.random()),
                tracker.accept)  # fmt: skip
    faults = FaultInjector(
        stack, random.Random(rng.random()), params["first fault (s)"],
        params["fault interval (s)"], seconds - 10, tracker.now,
    )  # fmt: skip
    sampler.start()
    load.start()
    faults.start()
    while tracker.now() < seconds:
        time.sleep(min(30.0, max(0.0, seconds - tracker.now())))
        last = sampler.samples[-1] if sampler.samples else None
        print(f"  {tracker.now():7.1f}s accepted {len(tracker.jobs)} completed "
              f"{tracker.completed} depths {last.depths if last else {}}", flush=True)  # fmt: skip
    drain_started = time.monotonic()  # waiting clients and a fault's remedy end first
    load.stop()
    faults.stop()
    drain_timeout = int(params["JOB_TTL (s)"]) + 60
    while tracker.pending() and time.monotonic() - drain_started < drain_timeout:
        time.sleep(1)
    drain_s = time.monotonic() - drain_started
    tracker.final_pass()
    sampler.stop()
    samples = sampler.samples
    census = {role: fd_census(pids, stack.ports()) for role, pids in stack.pids().items()}
    jobs = tracker.summary()
    load_counts = dict(load.counts.by_outcome)
    checks = [
        Check("every accepted job terminal", jobs["stuck"] == 0 and jobs["lost"] == 0,
              f"{jobs['terminal']} of {jobs['accepted']} (drain {drain_s:.0f} s)"),
        Check("none lost (record gone before it ended)", jobs["lost"] == 0,
              "; ".join([str(jobs["lost"]), *cast(list[str], jobs["unaccounted"])])),
        Check("no collector with two recorded results", jobs["duplicated"] == 0,
              str(jobs["duplicated"])),
        Check("none stuck (not terminal after the drain)", jobs["stuck"] == 0, str(jobs["stuck"])),
        Check("idempotent repeats answer the first job", not load_counts.get("idempotent-other"),
              f"{load_counts.get('idempotent-same', 0)} same, "
              f"{load_counts.get('idempotent-other', 0)} other"),
        Check("every fault's remedy done", not faults.errors, "; ".join(faults.errors) or "yes"),
    ]  # fmt: skip
    warm = warm_up_window(seconds, faults.plan, len(FAULTS))
    leak = leak_rows(samples, seconds, warm)
    checks += leak_checks(leak[2], LeakBound.of(seconds))
    redis = redis_rows(samples, int(params["JOB_TTL (s)"]) + 30, seconds)
    checks += redis_checks(samples, redis[2])
    return Outcome(
        params=params,
        jobs=jobs,
        load=load_counts,
        faults=faults.done,
        checks=checks,
        leak=leak,
        redis=redis,
        reaper=reaper_counts(stack.logs("w-maintenance")),
        breakers=breaker_transitions(samples),
        drain_s=drain_s,
        samples=samples,
        census=census,
    )


if __name__ == "__main__":
    sys.exit(main())
