"""`python -m benchmarks locust` (make bench-load): the locust mix against the service on
loopback, headless and bounded; where it saturates and what saturates first.

The service as deployed (`collectq api`: 2 gevent workers) and one noop worker (threads,
8) on a vhost and key prefix of their own (`benchmarks.localstack`). Locust runs
benchmarks/locustfile.py with the step shape of benchmarks/locustshape.py: 10, 20, …, 100
users, 8 s each (--run-time 80 s; bounded in time, and every user's requests by its think
time), think time 0.05-0.25 s, so 100 users offer more than two cores can serve. Meanwhile
the CPU of the API workers, the noop worker, redis-server, beam.smp (RabbitMQ) and locust
itself is sampled every second (psutil). Redis and RabbitMQ are the machine's shared ones:
their CPU includes whatever else runs.

Printed: per request name req/s, p50/p95/p99, failures, 429s (locust's CSV, kept in
benchmarks/results/locust_*.csv); per step the users, req/s, percentiles and CPU; the step
where it saturates (throughput per user below 3/4 of its best: answers slowed down)
and which process is nearest its ceiling there (one core for a single process: the GIL,
or Redis's one thread; all cores for RabbitMQ and for the machine). Also each part's CPU ms
per request over the whole run, which the machine's other load does not move as it moves
the knee, and the req/s the cores could serve by that arithmetic.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from benchmarks.__main__ import RESULTS, ROOT
from benchmarks.localstack import local_stack

__all__ = ["main", "saturation"]

USERS = 100
STEPS = 10
RUN_SECONDS = 80
SPAWN_RATE = 50  # users/s: a step's users arrive within its first fraction of a second
THINK = "0.05,0.25"
LOCUST_GRACE = 30  # s after --run-time before the locust process is killed
COMPONENTS = ("api", "worker", "redis", "rabbitmq", "locust")
KNEE = 0.75  # per-user throughput below this share of its best so far: saturated


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _by_name(name: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == name]


@contextmanager
def cpu_sampler(groups: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Sample each group's CPU% (of one core) every second while the block runs; a group
    is a callable returning its processes. Yields the list the samples go to."""
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    seen: dict[int, psutil.Process] = {}

    def percent(procs: list[psutil.Process]) -> list[float]:
        out = []
        for p in procs:
            p = seen.setdefault(p.pid, p)  # cpu_percent counts from the previous call
            try:
                out.append(p.cpu_percent(None))
            except psutil.NoSuchProcess:
                continue
        return out

    def run() -> None:
        psutil.cpu_percent(None)
        while not stop.wait(1.0):
            machine = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
            row: dict[str, Any] = {"t": time.time(), "machine": machine}
            for name, procs in groups.items():
                each = percent(procs())
                row[name] = round(sum(each), 1)
                row[f"{name}_max1"] = round(max(each, default=0.0), 1)
            samples.append(row)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def saturation(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first step whose throughput per user falls below KNEE of the best per-user
    throughput before it, None if none does. Each user waits for its answer and then
    thinks: per-user throughput drops only when answers get slower, that is when a
    resource is short (a single noisy p95 does not move it)."""
    best = 0.0
    for prev, cur in zip(steps, steps[1:], strict=False):
        best = max(best, prev["req_s"] / prev["users"])
        if cur["req_s"] / cur["users"] < KNEE * best:
            return {
                **cur,
                "previous": prev,
                "per_user_req_s": round(cur["req_s"] / cur["users"], 2),
            }
    return None


def _cpu_of_step(step: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, float]:
    inside = [s for s in samples if step["start"] + 1 <= s["t"] <= step["end"]]
    if not inside:
        return {}
    keys = ["machine", *COMPONENTS, *(f"{c}_max1" for c in COMPONENTS)]
    cpu = {k: round(sum(s[k] for s in inside) / len(inside), 1) for k in keys}
    # the rest of the machine: the other sessions on it, the kernel, this sampler
    cpu["others"] = round(max(0.0, cpu["machine"] - sum(cpu[c] for c in COMPONENTS)), 1)
    return cpu


def cpu_per_request(samples: list[dict[str, Any]], requests: int) -> dict[str, float]:
    """CPU ms each part spent per request over the whole run: robust to the machine's other
    load (which makes the knee move), and what capacity follows from by arithmetic."""
    if not samples or not requests:
        return {}
    spent = dict.fromkeys(COMPONENTS, 0.0)
    before = [samples[0]["t"] - 1.0] + [r["t"] for r in samples[:-1]]
    for prev_t, row in zip(before, samples, strict=True):
        for c in COMPONENTS:
            spent[c] += row[c] * 10 * (row["t"] - prev_t)  # % of a core over dt s → ms
    cost = {c: round(ms / requests, 3) for c, ms in spent.items()}
    cost["service"] = round(sum(cost[c] for c in ("api", "worker", "redis", "rabbitmq")), 3)
    return cost


def _nearest_ceiling(cpu: dict[str, float]) -> list[tuple[str, float]]:
    """Each part's use of its ceiling at a step, highest first (fractions)."""
    cores = psutil.cpu_count() or 1
    use = {
        "machine (all cores)": cpu["machine"] / (100 * cores),
        "one API worker process": cpu["api_max1"] / 100,
        "the noop worker process": cpu["worker_max1"] / 100,
        "redis-server": cpu["redis_max1"] / 100,
        "beam.smp (RabbitMQ)": cpu["rabbitmq"] / (100 * cores),
        "locust (load generator)": cpu["locust_max1"] / 100,
    }
    return sorted(use.items(), key=lambda kv: -kv[1])


def _locust(port: int, token: str, prefix: Path, seconds: int, started: list[Any]) -> None:
    """Run locust to its end; its process goes to `started` (the CPU sampler's)."""
    env = {
        **os.environ,
        "COLLECTQ_API_KEY": token,
        "COLLECTQ_LOAD_TARGETS": "http://127.0.0.1:9/load/{n}",  # noop: never fetched
        "COLLECTQ_LOAD_COLLECTORS": "noop",
        "COLLECTQ_LOAD_THINK": THINK,
        "COLLECTQ_LOAD_WAIT": "5",
        "COLLECTQ_LOAD_STEPS": str(STEPS),
        "COLLECTQ_LOAD_STEPS_OUT": f"{prefix}_steps.json",
    }
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        "benchmarks/locustfile.py,benchmarks/locustshape.py",
        "--headless",
        "--host",
        f"http://127.0.0.1:{port}",
        "--users",
        str(USERS),
        "--spawn-rate",
        str(SPAWN_RATE),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    log = RESULTS / "locust.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        started.append(psutil.Process(proc.pid))
        try:
            code = proc.wait(seconds + LOCUST_GRACE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if code not in (0, 1):  # 1: some requests failed, reported below
        raise RuntimeError(f"locust exited {code}; see {log}")


def _stats(prefix: Path) -> list[dict[str, Any]]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {
            "type": r["Type"],
            "name": r["Name"] or "(all)",
            "requests": int(r["Request Count"]),
            "failures": int(r["Failure Count"]),
            "req_s": round(float(r["Requests/s"]), 1),
            "p50": r["50%"],
            "p95": r["95%"],
            "p99": r["99%"],
        }
        for r in rows
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks locust")
    parser.add_argument("--seconds", type=int, default=RUN_SECONDS, help="≤ 90")
    args = parser.parse_args(argv)
    seconds = min(90, args.seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = RESULTS / "locust"
    print(
        f"locust: {STEPS} steps to {USERS} users over {seconds} s against `collectq api` "
        "(2 gevent workers) + a noop worker, loopback...",
        flush=True,
    )
    with local_stack(api="collectq") as stack:
        api = psutil.Process(stack.api.pid)
        worker = psutil.Process(stack.worker.pid)
        started: list[psutil.Process] = []  # locust's, once it runs
        groups = {
            "api": lambda: api.children(recursive=True),
            "worker": lambda: _tree(worker),
            "redis": lambda: _by_name("redis-server"),
            "rabbitmq": lambda: _by_name("beam.smp"),
            "locust": lambda: [p for root in started for p in _tree(root)],
        }
        with cpu_sampler(groups) as samples:
            _locust(stack.port, stack.token, prefix, seconds, started)
    report = _report(prefix, samples)
    (RESULTS / "locust.json").write_text(json.dumps(report, indent=2))
    _print(report)
    print(f"written {RESULTS / 'locust.json'} and {prefix}_*.csv")
    return 0


def _report(prefix: Path, samples: list[dict[str, Any]]) -> dict[str, Any]:
    steps = json.loads(Path(f"{prefix}_steps.json").read_text())
    for step in steps:
        step["cpu"] = _cpu_of_step(step, samples)
    knee = saturation(steps)
    first = _nearest_ceiling(knee["cpu"]) if knee and knee["cpu"] else []
    stats = _stats(prefix)
    total = next((r["requests"] for r in stats if r["name"] == "Aggregated"), 0)
    cost = cpu_per_request(samples, total)
    cores = psutil.cpu_count() or 1
    return {
        "stats": stats,
        "cpu_ms_per_request": cost,
        # what the machine's cores could serve of this mix if nothing else ran on them
        "ceiling_req_s_service_alone": round(cores * 1000 / cost["service"]) if cost else None,
        "ceiling_req_s_with_locust": (
            round(cores * 1000 / (cost["service"] + cost["locust"])) if cost else None
        ),
        "steps": steps,
        "saturation": knee and {k: v for k, v in knee.items() if k != "previous"},
        "before_saturation": knee and knee["previous"],
        "nearest_ceiling_at_saturation": [(k, round(v, 2)) for k, v in first],
        "cpu_samples": samples,
    }


def _print(report: dict[str, Any]) -> None:
    head = f"{'type':<5}{'name':<36}{'reqs':>7}{'fail':>6}{'req/s':>8}"
    head += f"{'p50':>7}{'p95':>7}{'p99':>7}"
    print(head + "\n" + "-" * len(head))
    for r in report["stats"]:
        print(
            f"{r['type']:<5}{r['name']:<36}{r['requests']:>7}{r['failures']:>6}{r['req_s']:>8}"
            f"{r['p50']:>7}{r['p95']:>7}{r['p99']:>7}"
        )
    print(
        "\nper step (ms; CPU in % of one core, mean over the step; api1: the busiest API "
        "worker; others: the rest of the machine)"
    )
    head = (
        f"{'users':>6}{'req/s':>8}{'p50':>7}{'p95':>7}{'p99':>7}{'fail':>6}{'429':>5}"
        f"{'machine':>9}{'api':>6}{'api1':>6}{'wrk':>6}{'redis':>6}{'rabbit':>7}{'locust':>7}"
        f"{'others':>7}"
    )
    print(head + "\n" + "-" * len(head))
    for s in report["steps"]:
        c = s["cpu"]
        print(
            f"{s['users']:>6}{s['req_s']:>8}{s['p50']!s:>7}{s['p95']!s:>7}{s['p99']!s:>7}"
            f"{s['failures']:>6}{s['rate_limited']:>5}{c.get('machine', 0):>9}{c.get('api', 0):>6}"
            f"{c.get('api_max1', 0):>6}{c.get('worker', 0):>6}{c.get('redis', 0):>6}"
            f"{c.get('rabbitmq', 0):>7}{c.get('locust', 0):>7}{c.get('others', 0):>7}"
        )
    others = [s["cpu"].get("others", 0.0) for s in report["steps"] if s["cpu"]]
    if others:
        print(
            f"\nthe rest of the machine (other sessions) took {sum(others) / len(others):.0f} % "
            f"of a core on average during the run (up to {max(others):.0f} %)"
        )
    cost = report["cpu_ms_per_request"]
    if cost:
        print(
            "\nCPU ms per request, whole run: "
            + ", ".join(f"{c} {cost[c]}" for c in (*COMPONENTS, "service"))
            + f"\n→ the cores could serve ≈ {report['ceiling_req_s_with_locust']} req/s of this "
            f"mix with locust on them, ≈ {report['ceiling_req_s_service_alone']} without"
        )
    knee = report["saturation"]
    if not knee:
        print("\nno knee within the run: throughput kept growing with users")
        return
    before = report["before_saturation"]
    print(
        f"\nsaturates between {before['users']} and {knee['users']} users (req/s per user "
        f"{knee['per_user_req_s']}, under {KNEE:.0%} of its best): {before['req_s']} → "
        f"{knee['req_s']} req/s, p95 {before['p95']} → {knee['p95']} ms"
    )
    print(
        "nearest its ceiling there: "
        + ", ".join(f"{name} {use:.0%}" for name, use in report["nearest_ceiling_at_saturation"])
    )
