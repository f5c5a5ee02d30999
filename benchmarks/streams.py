"""`python -m benchmarks.streams` (make bench-streams): 500 event streams on ONE API process.

One `collectq api` process (gunicorn, one worker, the default gevent worker class) and a
noop worker. The submit bench (16 clients, POST /v1/jobs, 5 s) runs without streams, with
STREAMS open event streams (GET /v1/events of another owner, who gets a trickle of jobs so
the streams carry events), and without again. Reported: the submit rate with vs without
(target: within 10 %), the API worker's RSS growth per stream, its Redis connections with
and without the streams, and what the streams received. The stream readers run in a
process of their own (one `selectors` loop), so they take no CPU from the submit clients.

Loopback only; bounded in count and time; its own vhost and key prefix, removed after.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis

from benchmarks.__main__ import (
    AMQP,
    AUTH,
    REDIS,
    RESULTS,
    UNLIMITED,
    _bench_key,
    _worker_ready,
    free_port,
    http_ready,
    process,
    purge,
    submit_rate,
    vhost,
)

STREAMS = int(os.environ.get("BENCH_STREAMS", "500"))
# jobs/s of the watched owner while the streams are open (each event reaches every stream)
TRICKLE_PER_S = float(os.environ.get("BENCH_TRICKLE", "2"))
READ_SECONDS = 40.0  # the readers' own bound (the with-streams phase is shorter)
ROUNDS = 3  # without / with streams, alternated (a shared machine's noise)
# s: the default EVENT_KEEPALIVE; a closed stream is noticed at its next write, so each
# round waits 2 keep-alives before the next "without" phase
KEEPALIVE = int(os.environ.get("BENCH_KEEPALIVE", "15"))
REDIS_PORT_HEX = f"{6379:04X}"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _submit(port: int, pid: int) -> tuple[float, float]:
    """The submit bench's rate, and the API worker's CPU ms per accepted submit in it."""
    cpu0 = _cpu_s(pid)
    rate, tally = submit_rate(port)
    return rate, round((_cpu_s(pid) - cpu0) * 1000 / max(1, tally.ok), 3)


def _redis_connections(pid: int) -> int:
    """TCP connections of process `pid` to port 6379 (its fds matched with /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            remote_port = cols[2].rsplit(":", 1)[1]
            if remote_port == REDIS_PORT_HEX and cols[9] in inodes and cols[3] == "01":
                count += 1
    return count


def readers(port: int, count: int, token: str, seconds: float) -> None:
    """(A subprocess) open `count` streams of /v1/events, read them all with one selector
    until stdin closes or `seconds` pass; print JSON: opened, events, keepalives, bytes."""
    sel = selectors.DefaultSelector()
    request = (
        f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    opened = 0
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(request)
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    stats = {"opened": 0, "events": 0, "keepalives": 0, "bytes": 0, "closed_by_server": 0}
    heads: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):  # fileobj: a socket, or stdin
            if key.fileobj is sys.stdin:
                deadline = 0
                break
            sock: Any = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                stats["closed_by_server"] += 1
                sel.unregister(sock)
                continue
            if sock.fileno() not in heads and b" 200 " in data.split(b"\r\n", 1)[0]:
                heads.add(sock.fileno())
                opened += 1
                if opened == count:
                    print("ALL-OPEN", flush=True)
            stats["bytes"] += len(data)
            stats["events"] += data.count(b"\nevent: ")
            stats["keepalives"] += data.count(b": keep-alive")
    stats["opened"] = opened
    print(json.dumps(stats), flush=True)


def _trickle(port: int, token: str, stop: threading.Event) -> int:
    """Jobs of the watched owner, TRICKLE_PER_S a second, until `stop`."""
    sent = 0
    while TRICKLE_PER_S > 0 and not stop.wait(1 / TRICKLE_PER_S):
        body = json.dumps({"target": "example.org", "collectors": ["noop"]}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/jobs",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - loopback
            sent += 1
    return sent


def _watch_key(prefix: str) -> str:
    from app.auth.apikeys import KeyStore

    store = KeyStore(redis.Redis.from_url(REDIS), prefix)
    scopes = ["jobs:read", "jobs:write"]
    return store.create(owner="watch", name="watch", scopes=scopes, rate_limits=UNLIMITED)[1]


@contextmanager
def _streams_open(port: int, watch: str) -> Iterator[tuple[list[dict[str, Any]], list[int]]]:
    """STREAMS streams open (a reader process) and the watched owner's trickle of jobs;
    yields lists that get the readers' counts and the trickle's job count at exit."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.streams", "readers", str(port), str(STREAMS), watch],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    assert reader.stdin is not None
    line = reader.stdout.readline()
    assert line.strip() == "ALL-OPEN", line
    stop = threading.Event()
    result: list[dict[str, Any]] = []
    sent: list[int] = []
    trickle = threading.Thread(target=lambda: sent.append(_trickle(port, watch, stop)))
    trickle.start()
    try:
        yield result, sent
    finally:
        stop.set()
        trickle.join()
        reader.stdin.close()
        result.append(json.loads(reader.stdout.read().strip().splitlines()[-1]))
        reader.wait(30)


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    out: dict[str, Any] = {
        "streams": STREAMS,
        "watched_jobs_per_s": TRICKLE_PER_S,
        "keepalive_s": KEEPALIVE,
    }
    with ExitStack() as stack:
        broker = f"{AMQP}/{stack.enter_context(vhost())}"
        env = {
            "COLLECTQ_ENV": "test",
            "COLLECTQ_BROKER_URL": broker,
            "COLLECTQ_REDIS_URL": REDIS,
            "COLLECTQ_REDIS_PREFIX": prefix,
            "COLLECTQ_PLUGINS": "noop=benchmarks.noop:NoopCollector",
            "COLLECTQ_LOG_LEVEL": "WARNING",
            "COLLECTQ_MAX_QUEUED_JOBS": "0",
            "COLLECTQ_MAX_WAITS_PER_CLIENT": "0",  # 500 streams of one key
            "COLLECTQ_API_WORKERS": "1",
            "COLLECTQ_METRICS_PORT": "0",
            "COLLECTQ_EVENT_KEEPALIVE": str(KEEPALIVE),
        }
        AUTH["Authorization"] = f"Bearer {_bench_key(prefix)}"
        watch = _watch_key(prefix)
        port, py = free_port(), sys.executable
        api = stack.enter_context(
            process(
                [py, "-m", "app.cli", "api", "--bind", f"127.0.0.1:{port}"], env, http_ready(port)
            )
        )
        worker = [py, "-m", "app.cli", "worker", "-Q", "collect.noop", "-c", "8", "-P", "threads"]
        stack.enter_context(process(worker, env, _worker_ready(port)))
        (api_worker,) = _children(api.pid)
        without: list[float] = []
        with_streams: list[float] = []
        cpu_without: list[float] = []
        cpu_with: list[float] = []
        idle_cpu: list[float] = []  # API worker CPU ms per s with the streams open, no submits
        rss: list[tuple[int, int]] = []
        conns: list[tuple[int, int]] = []
        received: list[dict[str, Any]] = []
        watched = 0
        for round_no in range(1, ROUNDS + 1):
            print(f"round {round_no}/{ROUNDS}: submit without streams...", flush=True)
            rate, cpu = _submit(port, api_worker)
            without.append(rate)
            cpu_without.append(cpu)
            purge(broker, "collect.noop")
            rss0, conns0 = _rss_kb(api_worker), _redis_connections(api_worker)
            print(f"round {round_no}/{ROUNDS}: submit with {STREAMS} streams...", flush=True)
            with _streams_open(port, watch) as (result, sent):
                cpu0 = _cpu_s(api_worker)
                time.sleep(2)
                idle_cpu.append(round((_cpu_s(api_worker) - cpu0) / 2 * 1000, 1))
                rss.append((rss0, _rss_kb(api_worker)))
                conns.append((conns0, _redis_connections(api_worker)))
                rate, cpu = _submit(port, api_worker)
                with_streams.append(rate)
                cpu_with.append(cpu)
                purge(broker, "collect.noop")
                time.sleep(2)  # the last watched jobs' events reach the streams
            received.append(result[0])
            watched += sent[0]
            time.sleep(KEEPALIVE * 2 + 1)  # the server notices the closed streams
        base, during = statistics.median(without), statistics.median(with_streams)
        per_stream = [round((b - a) / STREAMS, 1) for a, b in rss]
        out |= {
            "submit_without_streams_req_s": [round(r, 1) for r in without],
            "submit_with_streams_req_s": [round(r, 1) for r in with_streams],
            "ratio_of_medians": round(during / base, 3),
            "target_ratio": 0.9,
            "api_cpu_ms_per_submit_without": cpu_without,
            "api_cpu_ms_per_submit_with": cpu_with,
            "api_cpu_ms_per_s_streams_open_no_submits": idle_cpu,
            "rss_kb_before_and_with_streams": rss,
            "rss_kb_per_stream": per_stream,
            "api_redis_connections_before_and_with_streams": conns,
            "watched_jobs": watched,
            "received": received,
        }
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    print(json.dumps(out, indent=2))
    (RESULTS / "streams.json").write_text(json.dumps(out, indent=2))
    print(f"written {RESULTS / 'streams.json'}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["readers"]:
        readers(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], READ_SECONDS)
        sys.exit(0)
    sys.exit(main())
