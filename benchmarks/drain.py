"""The worker alone: how fast one worker of a collector's queue drains jobs queued before it.

`python -m benchmarks.drain [COLLECTOR|all] [N]` (default noop, 3000 jobs; http, dns, tls
1000; screenshot 40): N jobs are created and published the way the API does it
(`benchmarks.jobrun`) against a local target, then one `collectq worker -Q
collect.<collector>` starts and drains them; prints jobs/s and the worker's CPU per job
(psutil: the worker and its children, Chromium's included). No API in the measure
(docs/scaling.md, "Jobs per second per worker process").

The noop worker runs with 8 threads, as before; the others with their queue's default pool
(`app.options.POOL_DEFAULTS`: 32 threads for http, dns and tls, 2 prefork processes for
screenshot) and their collector's default policy (tls and screenshot cap calls in flight
per host: every job here has the same host). The targets: http, an asyncio server that
answers at once (its own process); dns, a dnslib server of the test suite (in this
process); tls, the test suite's TLS server; screenshot, a small local page. They share the
two cores with the worker, as everything does here. Loopback only; each drain bounded by
a 120 s wait.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psutil

from benchmarks.jobrun import bench_run, worker
from benchmarks.roundtrips import NOOP

__all__ = ["COUNTS", "drain", "drain_row"]

COUNTS = {"noop": 3000, "http": 1000, "dns": 1000, "tls": 1000, "screenshot": 40}
DRAIN_SECONDS = 120

# A collector's local target: a context yielding (target, options) for its jobs.
Target = Callable[[], AbstractContextManager[tuple[str | None, Any]]]


@contextmanager
def _noop() -> Iterator[tuple[str | None, Any]]:
    yield None, None


@contextmanager
def _http() -> Iterator[tuple[str | None, Any]]:
    from benchmarks.fanout import delay_server

    with delay_server(0.0) as port:
        yield f"http://127.0.0.1:{port}/", None


@contextmanager
def _dns() -> Iterator[tuple[str | None, Any]]:
    from tests.conftest import free_port
    from tests.dnsserver import dns_server

    port = free_port()
    with dns_server(port):
        yield "example.test", {"nameserver": "127.0.0.1", "port": port, "types": ["A"]}


@contextmanager
def _tls() -> Iterator[tuple[str | None, Any]]:
    from tests.tlsserver import certificates, tls_server

    ca, certs = certificates()
    with tls_server(certs["valid"]) as server:
        yield f"https://localhost:{server.port}/", {"ca_pem": ca.cert_pem.bytes().decode()}


@contextmanager
def _screenshot() -> Iterator[tuple[str | None, Any]]:
    from benchmarks.collectors import page_server

    with page_server() as url:
        yield url, None


TARGETS: dict[str, Target] = {
    "noop": _noop,
    "http": _http,
    "dns": _dns,
    "tls": _tls,
    "screenshot": _screenshot,
}


def _cpu(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


def drain(n: int, collector: str = "noop") -> tuple[int, int, float, float]:
    """(jobs done, of them succeeded, seconds from the worker's start, worker CPU seconds)."""
    args = ("-c", "8", "-P", "threads") if collector == "noop" else ()
    with TARGETS[collector]() as (target, options), bench_run(NOOP) as run:
        run.start_app()
        ids = [run.queue(collector, target, options) for _ in range(n)]
        with worker(run, f"collect.{collector}", *args) as proc:
            t0, c0 = time.monotonic(), _cpu(proc.pid)
            done = run.wait_terminal(ids, DRAIN_SECONDS, pause=0.05)
            took, cpu = time.monotonic() - t0, _cpu(proc.pid) - c0
        succeeded = sum(run.status(j) == "succeeded" for j in ids)
    return done, succeeded, took, cpu


def drain_row(name: str, n: int | None = None) -> dict[str, Any]:
    """One collector's drain, as `make bench` keeps it; printed as it ends."""
    n = n or COUNTS[name]
    done, succeeded, took, cpu = drain(n, name)
    row = {
        "collector": name,
        "jobs": n,
        "done": done,
        "succeeded": succeeded,
        "jobs_per_s": round(done / took, 1),
        "worker_cpu_ms_per_job": round(cpu * 1000 / max(done, 1), 2),
    }
    print(
        f"  worker alone, {name}: {done}/{n} drained ({succeeded} succeeded) in {took:.1f} s = "
        f"{row['jobs_per_s']} jobs/s; worker CPU {row['worker_cpu_ms_per_job']} ms per job",
        flush=True,
    )
    return row


def main(argv: list[str]) -> int:
    if argv and argv[0].isdigit():  # `drain N`: noop, as before
        argv = ["noop", *argv]
    which = argv[0] if argv else "noop"
    names = list(TARGETS) if which == "all" else [which]
    if not set(names) <= set(TARGETS):
        print(f"usage: python -m benchmarks.drain [{'|'.join(TARGETS)}|all] [N]")
        return 2
    rows = [drain_row(name, int(argv[1]) if len(argv) > 1 else None) for name in names]
    return 0 if all(r["succeeded"] == r["jobs"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
