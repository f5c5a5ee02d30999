"""`python -m benchmarks.streams` (make bench-streams): 500 event streams on ONE API process.

One `collectq api` process (gunicorn, one worker, the default gevent worker class) and a
noop worker. Each round runs the submit bench (16 clients, POST /v1/jobs, 5 s) three times:
without streams; with STREAMS open event streams (GET /v1/events of another owner) that
carry nothing but keep-alives; and with the same streams carrying that owner's jobs
(TRICKLE_PER_S jobs/s, each event fanned out to every stream). Reported per phase: the
submit rate and its ratio to the rate without streams (target: within 10 %), the API
worker's CPU per submit; and the API worker's CPU per second with the streams idle and
carrying events, its RSS growth per stream, its Redis connections, what the streams
received. The stream readers run in a process of their own (one `selectors` loop), so they
take no CPU from the submit clients.

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
    job,
    process,
    purge,
    service_env,
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


def _cpu_ms_per_s(pid: int, seconds: float) -> float:
    """Process `pid`'s CPU ms per second over the next `seconds`."""
    cpu0 = _cpu_s(pid)
    time.sleep(seconds)
    return round((_cpu_s(pid) - cpu0) / seconds * 1000, 1)


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


@contextmanager
def _trickle(port: int, token: str) -> Iterator[list[int]]:
    """Jobs of the watched owner, TRICKLE_PER_S a second, for the block; yields a list that
    gets the number sent at exit."""
    stop, sent = threading.Event(), [0]

    def run() -> None:
        while not stop.wait(1 / TRICKLE_PER_S):
            body = json.dumps(job()).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/jobs",
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=10):  # noqa: S310 - loopback
                sent[0] += 1

    thread = threading.Thread(target=run)
    thread.start()
    count: list[int] = []
    try:
        yield count
    finally:
        stop.set()
        thread.join()
        count.append(sent[0])


def _watch_key(prefix: str) -> str:
    from app.auth.apikeys import KeyStore

    store = KeyStore(redis.Redis.from_url(REDIS), prefix)
    scopes = ["jobs:read", "jobs:write"]
    return store.create(owner="watch", name="watch", scopes=scopes, rate_limits=UNLIMITED)[1]


@contextmanager
def _streams_open(port: int, watch: str) -> Iterator[list[dict[str, Any]]]:
    """STREAMS streams open (a reader process) for the block; yields a list that gets the
    readers' counts at exit."""
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
    result: list[dict[str, Any]] = []
    try:
        yield result
    finally:
        reader.stdin.close()
        result.append(json.loads(reader.stdout.read().strip().splitlines()[-1]))
        reader.wait(30)


def _phase(name: str, port: int, pid: int, broker: str, tally: dict[str, list[Any]]) -> None:
    """One submit bench; its rate and CPU per submit go to tally[name]."""
    rate, cpu = _submit(port, pid)
    tally.setdefault(name, []).append((round(rate, 1), cpu))
    purge(broker, "collect.noop")


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
            **service_env(broker, prefix),  # MAX_WAITS_PER_CLIENT off: 500 streams of one key
            "COLLECTQ_API_WORKERS": "1",
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
        tally: dict[str, list[Any]] = {}  # phase → [(submit req/s, API CPU ms/submit)]
        idle_cpu: list[float] = []  # API worker CPU ms per s, streams open, nothing else
        fanout_cpu: list[float] = []  # the same while the watched owner's jobs run
        rss: list[tuple[int, int]] = []
        conns: list[tuple[int, int]] = []
        received: list[dict[str, Any]] = []
        watched = 0
        for round_no in range(1, ROUNDS + 1):
            print(
                f"round {round_no}/{ROUNDS}: without streams, with {STREAMS} idle, then "
                f"carrying {TRICKLE_PER_S:g} watched jobs/s...",
                flush=True,
            )
            _phase("without", port, api_worker, broker, tally)
            rss0, conns0 = _rss_kb(api_worker), _redis_connections(api_worker)
            with _streams_open(port, watch) as result:
                idle_cpu.append(_cpu_ms_per_s(api_worker, 2))
                rss.append((rss0, _rss_kb(api_worker)))
                conns.append((conns0, _redis_connections(api_worker)))
                _phase("idle_streams", port, api_worker, broker, tally)
                with _trickle(port, watch) as sent:
                    fanout_cpu.append(_cpu_ms_per_s(api_worker, 2))
                    _phase("fanout_streams", port, api_worker, broker, tally)
                time.sleep(2)  # the last watched jobs' events reach the streams
            received.append(result[0])
            watched += sent[0]
            time.sleep(KEEPALIVE * 2 + 1)  # the server notices the closed streams
        base = statistics.median(rate for rate, _ in tally["without"])
        for name, rows in tally.items():
            out[name] = {
                "submit_req_s": [rate for rate, _ in rows],
                "api_cpu_ms_per_submit": [cpu for _, cpu in rows],
                "ratio_of_medians": round(statistics.median(r for r, _ in rows) / base, 3),
            }
        out |= {
            "target_ratio": 0.9,
            "api_cpu_ms_per_s_idle_streams": idle_cpu,
            "api_cpu_ms_per_s_fanout_streams": fanout_cpu,
            "rss_kb_before_and_with_streams": rss,
            "rss_kb_per_stream": [round((b - a) / STREAMS, 1) for a, b in rss],
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
