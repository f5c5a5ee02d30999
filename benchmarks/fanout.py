"""HTTP fan-out: `python -m benchmarks fanout` (or `python -m benchmarks.fanout`).

One real worker process of ``collect.http`` with ``COLLECTQ_POOL_HTTP`` concurrency C
fetches from a loopback server that answers every request after `DELAY` seconds
(asyncio, its own process, holds thousands of keep-alive connections). Per C, the
jobs are queued first with no worker running, then the worker starts and drains
them; fetches/s is measured over the drain (first collector start to last finish, from
the job records) against the ideal C / DELAY. The worker's CPU time (user + system, its
whole process tree, from /proc) over the drain gives the CPU cost per fetch. Then bare
Celery drains the same (`benchmarks.bare_fetch`: a task per urllib3 GET, same pool,
concurrency and prefetch): the floor one Celery task per fetch sets before anything
collectq adds, and ours against it.
Loopback only; bounded in jobs (`JOBS_PER_C` × C) and time (`DRAIN_SECONDS`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis

__all__ = ["CONCURRENCIES", "delay_server", "fanout_rows", "main"]

DELAY = 0.1
CONCURRENCIES = (10, 50, 100, 200)
JOBS_PER_C = 15  # the drain takes about JOBS_PER_C × DELAY seconds at the ideal rate
DRAIN_SECONDS = 60.0
QUEUE_THREADS = 8
_BODY = b"ok"


async def _serve(port: int, delay: float) -> None:
    """Answer every HTTP/1.1 request on the connection after `delay` seconds (keep-alive)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                await asyncio.sleep(delay)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


@contextmanager
def delay_server(delay: float) -> Iterator[int]:
    """A loopback server in its own process answering after `delay` s; yields its port."""
    from benchmarks.__main__ import free_port

    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.fanout", "--serve", str(port), str(delay)]
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the delay server did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its children (Linux /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = f"/proc/{pid}/task/{pid}/children"
        pids += [int(p) for p in open(children).read().split()]  # noqa: SIM115
    except OSError:
        pass
    for p in pids:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _queue_all(run: Any, n: int, url: str) -> list[str]:
    ids: list[str] = []
    lock = threading.Lock()
    budget = iter(range(n))

    def client() -> None:
        while True:
            with lock:
                if next(budget, None) is None:
                    return
            job_id = run.queue("http", url)
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=client) for _ in range(QUEUE_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids


def _span(run: Any, ids: list[str]) -> float:
    """Seconds from the first job's start to the last one's end (the job records)."""
    from app.runtime import runtime

    store = runtime(run.app).store
    pipe = store.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(store.keys.job(job_id), ["started_at", "finished_at"])
    times = [(s, f) for s, f in pipe.execute() if s and f]
    first = min(datetime.fromisoformat(s.decode()).timestamp() for s, _ in times)
    last = max(datetime.fromisoformat(f.decode()).timestamp() for _, f in times)
    return last - first


def fanout_row(port: int, c: int) -> dict[str, Any]:
    """Fetches/s of one worker at concurrency `c` against the delay server at `port`."""
    from benchmarks.jobrun import bench_run, worker

    n = JOBS_PER_C * c
    url = f"http://127.0.0.1:{port}/"
    with bench_run(COLLECTQ_POOL_HTTP=f"concurrency={c}") as run:
        run.start_app()
        ids = _queue_all(run, n, url)
        with worker(run, "collect.http") as proc:
            cpu0 = _tree_cpu_seconds(proc.pid)
            done = run.wait_terminal(ids, DRAIN_SECONDS)
            cpu = _tree_cpu_seconds(proc.pid) - cpu0
        span = _span(run, ids)
        succeeded = sum(run.status(j) == "succeeded" for j in ids)
    rate = done / span if span > 0 else 0.0
    ideal = c / DELAY
    return {
        "bench": f"fan-out C={c} (fetches/s)",
        "ours": round(rate, 1),
        "baseline": round(ideal, 1),
        "ratio": round(rate / ideal, 3),
        "target": 0.8,
        "jobs": n,
        "done": done,
        "succeeded": succeeded,
        "worker_cpu_ms_per_fetch": round(cpu / done * 1000, 2) if done else None,
    }


def bare_row(port: int, c: int) -> dict[str, Any]:
    """The same drain by bare Celery (`benchmarks.bare_fetch`: a task per urllib3 GET)."""
    from benchmarks.__main__ import AMQP, REDIS, celery_worker, drop_prefix, process, vhost
    from benchmarks.bare_fetch import QUEUE, fetch, keys

    n = JOBS_PER_C * c
    url = f"http://127.0.0.1:{port}/"
    prefix = f"benchbare{os.getpid()}-{c}:"
    first, count, last = keys(prefix)
    client = redis.Redis.from_url(REDIS)
    with vhost() as vh:
        broker = f"{AMQP}/{vh}"
        env = {
            "BENCH_BROKER_URL": broker,
            "BENCH_REDIS_URL": REDIS,
            "BENCH_PREFIX": prefix,
            "BENCH_CONCURRENCY": str(c),
        }
        # this run's vhost, with the app's transport options (publisher confirms)
        with fetch.app.connection_for_write(broker) as conn, conn.Producer() as producer:
            for _ in range(n):
                fetch.apply_async((url,), producer=producer)
        # the http queue's prefetch (app.options.POOL_DEFAULTS)
        argv = celery_worker("benchmarks.bare_fetch", QUEUE, str(c), "--prefetch-multiplier", "4")
        try:
            with process(argv, env, lambda: client.exists(count)) as proc:
                cpu0, done0 = _tree_cpu_seconds(proc.pid), int(client.get(count) or 0)
                deadline = time.monotonic() + DRAIN_SECONDS
                while int(client.get(count) or 0) < n and time.monotonic() < deadline:
                    time.sleep(0.05)
                done = int(client.get(count) or 0)
                cpu = _tree_cpu_seconds(proc.pid) - cpu0
            span = float(client.get(last) or 0) - float(client.get(first) or 0)
        finally:
            drop_prefix(prefix)
    rate = done / span if span > 0 else 0.0
    return {
        "bench": f"fan-out C={c}, bare Celery",
        "ours": round(rate, 1),
        "baseline": round(c / DELAY, 1),
        "ratio": round(rate * DELAY / c, 3),
        "target": "—",
        "jobs": n,
        "done": done,
        "worker_cpu_ms_per_fetch": round(cpu / (done - done0) * 1000, 2) if done > done0 else None,
    }


def fanout_rows(concurrencies: tuple[int, ...] = CONCURRENCIES) -> list[dict[str, Any]]:
    """Per C: ours against the ideal, bare Celery against the ideal, ours against bare."""
    rows = []
    with delay_server(DELAY) as port:
        for c in concurrencies:
            print(
                f"fan-out: one http worker, C={c}, {JOBS_PER_C * c} jobs queued first, "
                f"target answers after {DELAY * 1000:.0f} ms; then bare Celery the same...",
                flush=True,
            )
            ours, bare = fanout_row(port, c), bare_row(port, c)
            rows += [ours, bare, _versus(ours, bare, c)]
            for r in (ours, bare):
                print(
                    f"  {r['bench']}: {r['ours']} fetches/s of ideal {r['baseline']} = "
                    f"{r['ratio']}; {r['done']}/{r['jobs']} done, "
                    f"worker CPU {r['worker_cpu_ms_per_fetch']} ms per fetch",
                    flush=True,
                )
    return rows


def _versus(ours: dict[str, Any], bare: dict[str, Any], c: int) -> dict[str, Any]:
    return {
        "bench": f"fan-out C={c}, ours/bare",
        "ours": ours["ours"],
        "baseline": bare["ours"],
        "ratio": round(ours["ours"] / bare["ours"], 3) if bare["ours"] else 0.0,
        "target": "—",
    }


def main(argv: list[str]) -> int:
    """`--serve PORT DELAY`: the delay server; else the bench for the C given (or all)."""
    if argv[:1] == ["--serve"]:
        asyncio.run(_serve(int(argv[1]), float(argv[2])))
        return 0
    from benchmarks.__main__ import _finish

    concurrencies = tuple(int(a) for a in argv) or CONCURRENCIES
    return _finish(fanout_rows(concurrencies), {})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
