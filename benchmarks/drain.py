"""The worker alone: how fast one noop worker drains jobs queued before it starts.

`python -m benchmarks.drain [N]` (default 3000): N noop jobs are created and published the
way the API does it (`benchmarks.jobrun`), then one `collectq worker -Q collect.noop -c 8 -P
threads` starts and drains them; prints jobs/s and the worker's CPU per job (psutil, the
worker and its children). No API in the measure (docs/scaling.md, "Second pass"). Loopback
only; bounded by a 120 s wait.
"""

from __future__ import annotations

import sys
import time

import psutil

from benchmarks.jobrun import bench_run, worker
from benchmarks.roundtrips import NOOP

__all__ = ["drain"]


def _cpu(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


def drain(n: int) -> tuple[int, float, float]:
    """(jobs done, seconds from the worker's start, worker CPU seconds)."""
    with bench_run(NOOP) as run:
        run.start_app()
        ids = [run.queue("noop") for _ in range(n)]
        with worker(run, "collect.noop", "-c", "8", "-P", "threads") as proc:
            t0, c0 = time.monotonic(), _cpu(proc.pid)
            done = run.wait_terminal(ids, 120, pause=0.05)
            return done, time.monotonic() - t0, _cpu(proc.pid) - c0


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 3000
    done, took, cpu = drain(n)
    print(
        f"{done}/{n} noop jobs drained in {took:.1f} s = {done / took:.0f} jobs/s; "
        f"worker CPU {cpu * 1000 / max(done, 1):.2f} ms per job"
    )
    return 0 if done == n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
