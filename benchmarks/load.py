"""A small bounded load generator: N threads, keep-alive HTTP, fixed duration or count."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ok: bool, latency: float) -> None:
        with self.lock:
            if ok:
                self.ok += 1
                self.latencies.append(latency)
            else:
                self.errors += 1

    def pct(self, p: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 if lat else float("nan")


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers={**sent, **(headers or {})})
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, (json.loads(raw) if raw else None)


def run_threads(
    port: int,
    threads: int,
    seconds: float,
    max_ops: int,
    op: Callable[[http.client.HTTPConnection], bool],
) -> tuple[Tally, float]:
    """Run `op` from `threads` threads until `seconds` pass or `max_ops` ops are done."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    budget = iter(range(max_ops))
    budget_lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            with budget_lock:
                if next(budget, None) is None:
                    break
            t0 = time.perf_counter()
            try:
                ok = op(conn)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            tally.add(ok, time.perf_counter() - t0)
        conn.close()

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return tally, time.perf_counter() - start
