"""The latency row: submit → collector start, p50/p99, open loop at a fixed rate.

`latency_row(port, rate, seconds, auth)` submits noop jobs at `rate` a second (paced by
schedule, from SENDERS threads with a connection each, so one slow answer does not delay
the next send), notes each submit's send time, then reads each job's envelope: the noop
collector's `started_at` (ms, truncated) minus the send time is the latency. The parts,
per job: the API before the job record (send → `created_at`); the record to the worker's
`begin` (the job's `started_at`: the API's publish, the broker, the worker's pickup); the
worker from `begin` to the collector's start; the submit's own answer (send → 202, which
waits for the broker's confirm: the job may start before it); how late the sender was.
With the worker's metrics URL, the worker's own queue wait (`x_enqueued_at` → task start,
the `collectq_queue_wait_seconds` histogram) over the same run as well.

`python -m benchmarks latency [--rate N] [--seconds S]` runs it alone, on a service of its
own with the gunicorn of `python -m benchmarks`; without --rate it measures the end-to-end
maximum first (the bench's own e2e loop) and uses half of it.

Loopback only; bounded: at most MAX_SUBMITS submits, in `seconds`.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from benchmarks.load import request

__all__ = ["TARGET_P99_MS", "latency_row", "main", "summary"]

TARGET_P99_MS = 50.0
SENDERS = 8
READERS = 4
MAX_SUBMITS = 5000
SECONDS = 10.0
WAIT_QUEUE = "collect.noop"
_TARGETS = itertools.count()
# The parts of the latency, between the marks each job leaves: its send (here), the job
# record (`created_at`, the API), the collector's begin in the worker (the job's
# `started_at`: publish, broker and pickup lie before it) and the collector's own start.
PARTS = ("send_to_record", "record_to_begin", "begin_to_collector", "submit_answer", "send_lag")


@dataclass
class _Sent:
    due: float  # unix time the schedule gave this submit
    sent: float  # unix time it was sent
    answered: float
    job_id: str | None


def latency_row(
    port: int,
    rate: float,
    seconds: float,
    auth: dict[str, str],
    *,
    worker_metrics: str | None = None,
) -> dict[str, Any]:
    """Submit → collector start at `rate` jobs/s for `seconds`; p50/p99 in ms and counts."""
    waited0 = _queue_wait(worker_metrics)
    sent = _send(port, rate, seconds, auth)
    envelopes = _read(port, [s.job_id for s in sent if s.job_id], auth)
    waited = _diff(_queue_wait(worker_metrics), waited0)
    total: list[float] = []
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    for s in sent:
        env = envelopes.get(s.job_id or "") or {}
        started = (env.get("results", {}).get("noop") or {}).get("started_at")
        if not started or not env.get("started_at"):
            continue
        total.append((_ts(started) - s.sent) * 1000)
        marks = [s.sent, _ts(env["created_at"]), _ts(env["started_at"]), _ts(started)]
        for name, (a, b) in zip(PARTS, itertools.pairwise(marks), strict=False):
            parts[name].append((b - a) * 1000)
        parts["submit_answer"].append((s.answered - s.sent) * 1000)
        parts["send_lag"].append((s.sent - s.due) * 1000)
    slow = sorted(range(len(total)), key=total.__getitem__)[-max(1, len(total) // 100) :]
    return {
        "rate": round(rate, 1),
        "seconds": seconds,
        "submitted": len(sent),
        "accepted": sum(1 for s in sent if s.job_id),
        "measured": len(total),
        "p50_ms": _pct(total, 0.5),
        "p99_ms": _pct(total, 0.99),
        "max_ms": round(max(total), 1) if total else None,
        "target_p99_ms": TARGET_P99_MS,
        "parts_ms": {name: _spread(values) for name, values in parts.items()},
        "slowest_1pct_mean_ms": {
            "total": _mean([total[i] for i in slow]),
            **{name: _mean([values[i] for i in slow]) for name, values in parts.items()},
        },
        **({"queue_wait": waited} if waited else {}),
    }


def _send(port: int, rate: float, seconds: float, auth: dict[str, str]) -> list[_Sent]:
    count = max(1, min(MAX_SUBMITS, int(rate * seconds)))
    out: list[_Sent | None] = [None] * count
    order = itertools.count()
    lock = threading.Lock()
    start = time.time() + 0.2

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                k = next(order)
            if k >= count:
                break
            due = start + k / rate
            time.sleep(max(0.0, due - time.time()))
            body = {"target": f"lat{next(_TARGETS)}.example.org", "collectors": ["noop"]}
            at = time.time()
            try:
                status, answer = request(conn, "POST", "/v1/jobs", body, auth)
            except (OSError, http.client.HTTPException):
                status, answer = 0, None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            job_id = answer["id"] if status == 202 else None
            out[k] = _Sent(due, at, time.time(), job_id)
        conn.close()

    _run(sender, SENDERS)
    return [s for s in out if s is not None]


def _read(port: int, job_ids: list[str], auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each job's envelope once it is terminal (long-poll, 10 s at most each)."""
    todo = iter(job_ids)
    lock = threading.Lock()
    found: dict[str, dict[str, Any]] = {}

    def reader() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                job_id = next(todo, None)
            if job_id is None:
                break
            status, env = request(conn, "GET", f"/v1/jobs/{job_id}?wait=10", None, auth)
            if status == 200:
                found[job_id] = env
        conn.close()

    _run(reader, READERS)
    return found


def _run(target: Any, threads: int) -> None:
    pool = [threading.Thread(target=target) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _queue_wait(url: str | None) -> dict[str, float] | None:
    """The worker's queue-wait histogram of the noop queue: {le: count, "sum": s}."""
    if not url:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "collectq_queue_wait_seconds":
            continue
        for s in family.samples:
            if s.labels.get("queue") != WAIT_QUEUE:
                continue
            if s.name.endswith("_bucket"):
                out[s.labels["le"]] = s.value
            elif s.name.endswith("_sum"):
                out["sum"] = s.value
    return out


def _diff(after: dict[str, float] | None, before: dict[str, float] | None) -> dict[str, Any]:
    """Mean and the share within 5/10/25/50 ms of the waits between two scrapes."""
    if not after:
        return {}
    before = before or {}
    count = after.get("+Inf", 0) - before.get("+Inf", 0)
    if not count:
        return {}
    share = {
        f"within_{int(float(le) * 1000)}ms": round((after[le] - before.get(le, 0)) / count, 3)
        for le in ("0.005", "0.01", "0.025", "0.05")
        if le in after
    }
    mean = (after.get("sum", 0) - before.get("sum", 0)) / count * 1000
    return {"count": int(count), "mean_ms": round(mean, 2), **share}


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], p: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 1) if ordered else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _spread(values: list[float]) -> dict[str, float | None]:
    return {"p50": _pct(values, 0.5), "p99": _pct(values, 0.99)}


def summary(row: dict[str, Any]) -> None:
    """Print a latency row: the figures, then where the time went."""
    print(
        f"submit → collector start at {row['rate']} jobs/s: p50 {row['p50_ms']} ms, "
        f"p99 {row['p99_ms']} ms (target < {row['target_p99_ms']:g}), max {row['max_ms']} ms; "
        f"{row['measured']} of {row['submitted']} submits measured"
    )
    slow = row["slowest_1pct_mean_ms"]
    print(f"{'part (ms)':<22}{'p50':>8}{'p99':>8}{'slowest 1%':>12}")
    for name, spread in row["parts_ms"].items():
        print(f"{name:<22}{spread['p50']!s:>8}{spread['p99']!s:>8}{slow.get(name)!s:>12}")
    if "queue_wait" in row:
        print("worker queue wait (x_enqueued_at → task start): " + json.dumps(row["queue_wait"]))


def main(argv: list[str]) -> int:
    from benchmarks.__main__ import RESULTS, e2e_ours
    from benchmarks.localstack import local_stack

    parser = argparse.ArgumentParser(prog="python -m benchmarks latency")
    parser.add_argument("--rate", type=float, help="jobs/s (default: half the e2e maximum)")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    with local_stack(api="bench") as stack:
        rate = args.rate
        if rate is None:
            print("end to end: the bench's e2e loop, for the maximum...", flush=True)
            e2e, tally = e2e_ours(stack.port)
            out["e2e_jobs_per_s"] = round(e2e, 1)
            out["e2e_errors"] = tally.errors
            rate = e2e / 2
        print(f"latency: submit → collector start at {rate:.1f} jobs/s, open loop...", flush=True)
        out["latency"] = latency_row(
            stack.port, rate, min(args.seconds, 60), stack.auth, worker_metrics=stack.worker_metrics
        )
    if "e2e_jobs_per_s" in out:
        print(f"end to end: {out['e2e_jobs_per_s']} jobs/s ({out['e2e_errors']} errors)")
    summary(out["latency"])
    (RESULTS / "latency.json").write_text(json.dumps(out, indent=2))
    print(f"written {RESULTS / 'latency.json'}")
    return 0
