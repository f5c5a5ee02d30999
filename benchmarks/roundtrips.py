"""Redis round trips per API request and per job in the worker.

A round trip is one write to a Redis socket: a command, a pipeline or a script call each
count once (`count_round_trips` wraps redis-py's connection).

* `round_trips(env, auth)`: one submit and one poll, the API in this process (Flask's test
  client) against the real Redis and RabbitMQ; the first request of each kind warms caches
  and is not counted (`python -m benchmarks roundtrips`).
* `python -m benchmarks.roundtrips [N]`: a real worker (threads pool, one thread) with the
  counter installed runs N noop jobs, then N http jobs (a loopback server answering at
  once), one after another; the round trips counted while they ran, divided by N, are
  printed per job with the commands behind them. Background writes (the node's presence
  every 10 s) are measured while idle and left out.

Loopback only; bounded in count and time.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis.connection import AbstractConnection

__all__ = ["count_round_trips", "main", "measure", "per_job", "round_trips"]

_LOCK = threading.Lock()  # worker threads count into one Counter
# the worker's counter stays installed while the process lives (a dropped context would be
# closed by the garbage collector, restoring redis-py)
_FOR_LIFE = contextlib.ExitStack()


@contextlib.contextmanager
def count_round_trips() -> Iterator[collections.Counter[str]]:
    """Count socket writes to Redis by the command (or first command of a pipeline) sent."""
    counts: collections.Counter[str] = collections.Counter()
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        first = command[0] if isinstance(command, list) else command
        name = bytes(first).split(b"\r\n")[2].decode(errors="replace").upper()
        if isinstance(command, list) and len(command) > 1:
            name = f"pipeline({name}…)"
        if os.environ.get("BENCH_TRACE_REDIS"):
            where = [f for f in traceback.extract_stack()[:-1] if "/app/" in f.filename]
            name += f" @ {where[-1].name}" if where else ""
        with _LOCK:
            counts[name] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def round_trips(env: dict[str, str], auth: dict[str, str]) -> dict[str, dict[str, int]]:
    """Round trips of one submit (a new job) and one poll (GET /v1/jobs/{id})."""
    os.environ.update(env)
    from app import create_app

    app = create_app()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = auth["Authorization"]
    out: dict[str, dict[str, int]] = {}
    n = 0

    def submit() -> Any:
        nonlocal n
        n += 1
        body = {"target": f"rt{n}.example.org", "collectors": ["noop"]}
        return client.post("/v1/jobs", json=body)

    job_id = submit().get_json()["id"]
    with count_round_trips() as counts:
        assert submit().status_code == 202
    out["submit"] = dict(counts)
    client.get(f"/v1/jobs/{job_id}")
    with count_round_trips() as counts:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    out["poll"] = dict(counts)
    return out


NOOP = "noop=benchmarks.noop:NoopCollector"
_COUNT_FILE = "BENCH_RT_FILE"


def _install_counter(path: Path) -> None:
    """Count this process's round trips for its lifetime; dump them to `path` every 0.1 s."""
    counts = _FOR_LIFE.enter_context(count_round_trips())

    def dump() -> None:
        while True:
            time.sleep(0.1)
            with _LOCK:
                snapshot = dict(counts)
            path.write_text(json.dumps(snapshot))

    threading.Thread(target=dump, daemon=True, name="rt-dump").start()


def _counted_worker(argv: list[str]) -> None:
    """`collectq worker …` in this process (not exec'd), with the counter installed."""
    _install_counter(Path(os.environ[_COUNT_FILE]))
    from celery.bin.celery import main as celery_main

    import app.cli.main as cli

    def in_process(celery_argv: list[str]) -> None:
        sys.argv = ["celery", *celery_argv[2:]]  # drop "-m celery"
        celery_main()

    cli._exec = in_process  # type: ignore[assignment]
    cli.main(["worker", *argv])


def _read(path: Path) -> Counter[str]:
    try:
        return Counter(json.loads(path.read_text()))
    except (OSError, ValueError):
        return Counter()


def _settled(path: Path) -> Counter[str]:
    time.sleep(0.3)  # the dump thread writes every 0.1 s
    return _read(path)


def measure(collector: str, n: int, target: Any = None) -> tuple[float, Counter[str]]:
    """Round trips per job of `collector` (and what they were), `n` jobs one at a time."""
    from benchmarks.jobrun import bench_run, worker

    with tempfile.TemporaryDirectory() as tmp, bench_run(NOOP) as run:
        path = Path(tmp) / "counts.json"
        run.env[_COUNT_FILE] = str(path)
        queue = f"collect.{collector}"
        run.start_app()
        launcher = ("benchmarks.roundtrips", "--worker")
        with worker(run, queue, "-c", "1", "-P", "threads", launcher=launcher):
            for _ in range(2):  # warm-up: scripts loaded, connections open
                run.wait_terminal([run.queue(collector, target)], 20)
            idle0 = _settled(path)
            time.sleep(1.0)
            idle = _settled(path) - idle0
            before, t0 = _read(path), time.monotonic()
            for _ in range(n):
                job_id = run.queue(collector, target)
                if run.wait_terminal([job_id], 20) != 1:
                    raise RuntimeError(f"{collector} job {job_id} did not finish")
            took = time.monotonic() - t0
            spent = _settled(path) - before
    # background (presence) at the idle rate over the measured time, rounded away
    for name, count in idle.items():
        spent[name] -= round(count * (took + 0.3))
    spent = +spent
    return sum(spent.values()) / n, spent


def per_job(n: int = 20) -> dict[str, tuple[float, Counter[str]]]:
    """Worker round trips per noop job and per http job (`measure`, `n` jobs each)."""
    from benchmarks.fanout import delay_server

    out = {"noop": measure("noop", n)}
    with delay_server(0.0) as port:
        out["http"] = measure("http", n, f"http://127.0.0.1:{port}/")
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        _counted_worker(argv[1:])
        return 0
    n = int(argv[0]) if argv else 20
    print(f"worker Redis round trips per job ({n} jobs each, one at a time):")
    for name, (per, spent) in per_job(n).items():
        _print(name, per, spent, n)
    return 0


def _print(name: str, per: float, spent: Counter[str], n: int) -> None:
    print(f"  {name}: {per:.2f} round trips per job")
    for cmd, count in spent.most_common():
        print(f"      {count / n:5.2f}  {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
