"""`python -m benchmarks` (make bench): ours vs a bare baseline, measured in the same run.

Loopback only; every load loop is bounded in time and count. Uses its own
RabbitMQ vhost and Redis key prefix / DB and removes them afterwards.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from benchmarks import latency
from benchmarks.latency import latency_row
from benchmarks.load import Tally, request, run_threads

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REDIS = os.environ.get("COLLECTQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP = os.environ.get("COLLECTQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
# Every gunicorn of the bench (bare Flask, the peer, ours) runs as `collectq api` does by
# default: 2 gevent workers (API_WORKERS, API_WORKER_CLASS, API_CONNECTIONS).
GUNICORN = [
    "--workers",
    "2",
    "--worker-class",
    "gevent",
    "--worker-connections",
    "1000",
    "--log-level",
    "warning",
]
CLIENTS = 16
SUBMIT_SECONDS = 5.0
E2E_JOBS = 400
E2E_SECONDS = 60.0
WORKER_CONCURRENCY = "8"
# how often the peer's client polls a job it submitted (it has no long-poll)
PEER_POLL_INTERVAL = 0.01
JOB = {"target": "example.org", "collectors": ["noop"]}
_TARGETS = itertools.count()


def job() -> dict[str, Any]:
    """A submit's body: a target of its own, so no two are the same work (identical
    requests in flight share one job, `app.jobs.reuse`)."""
    return {**JOB, "target": f"t{next(_TARGETS)}.example.org"}


# Set in main(): a client's key of this run, with limits the load cannot reach.
AUTH: dict[str, str] = {}
# Set by api_rows(): submit → collector start at half the end-to-end maximum.
LATENCY: dict[str, Any] = {}
UNLIMITED = {"submit": "100000000/minute", "read": "100000000/minute"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def vhost() -> Iterator[str]:
    ctl = shutil.which("rabbitmqctl") or "rabbitmqctl"
    name = f"collectq-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run([ctl, "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        [ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run([ctl, "delete_vhost", name], capture_output=True)


@contextmanager
def process(
    argv: list[str], env: dict[str, str], ready: Any = None
) -> Iterator[subprocess.Popen[bytes]]:
    log = open(  # noqa: SIM115 - closed in the finally below, after the process
        RESULTS / f"{Path(argv[2] if len(argv) > 2 else argv[0]).name}-{uuid.uuid4().hex[:4]}.log",
        "wb",
    )
    proc = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        if ready is not None:
            deadline = time.monotonic() + 40
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv} did not become ready; see {log.name}")
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def purge(broker: str, queue: str) -> int:
    """Drop every message waiting in `queue`; return how many there were."""
    from kombu import Connection

    with Connection(broker) as conn:
        channel: Any = conn.default_channel  # an AMQP channel; the stubs know only StdChannel
        return int(channel.queue_purge(queue) or 0)


def http_ready(port: int, path: str = "/health") -> Any:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                return True
        except OSError as exc:
            return getattr(exc, "code", 0) == 405  # bare app: GET on a POST route still means "up"

    return check


def submit_rate(port: int, auth: dict[str, str] = AUTH) -> tuple[float, Tally]:
    def op(conn: Any) -> bool:
        return request(conn, "POST", "/v1/jobs", job(), auth)[0] == 202

    run_threads(port, CLIENTS, 1.0, 10_000, op)  # warm-up
    tally, wall = run_threads(port, CLIENTS, SUBMIT_SECONDS, 200_000, op)
    return tally.ok / wall, tally


def e2e_ours(port: int, *, in_one_request: bool = True) -> tuple[float, Tally]:
    """Noop jobs submit → succeeded, 16 clients: `POST /v1/jobs?wait=10` (one request per
    job), or with `in_one_request=False` a submit and then `GET /v1/jobs/{id}?wait=10`."""

    def op(conn: Any) -> bool:
        if in_one_request:
            status, env = request(conn, "POST", "/v1/jobs?wait=10", job(), AUTH)
            return status == 200 and env["status"] == "succeeded"
        status, body = request(conn, "POST", "/v1/jobs", job(), AUTH)
        if status != 202:
            return False
        status, env = request(conn, "GET", f"/v1/jobs/{body['id']}?wait=10", None, AUTH)
        return status == 200 and env["status"] == "succeeded"

    run_threads(port, CLIENTS, 2.0, 50, op)
    tally, wall = run_threads(port, CLIENTS, E2E_SECONDS, E2E_JOBS, op)
    return tally.ok / wall, tally


def poll_rate(port: int, job_id: str, auth: dict[str, str]) -> tuple[float, Tally]:
    """GET one job's envelope (no wait), 16 clients."""

    def op(conn: Any) -> bool:
        return request(conn, "GET", f"/v1/jobs/{job_id}", None, auth)[0] == 200

    run_threads(port, CLIENTS, 1.0, 10_000, op)  # warm-up
    tally, wall = run_threads(port, CLIENTS, SUBMIT_SECONDS, 200_000, op)
    return tally.ok / wall, tally


def e2e_peer(port: int) -> tuple[float, Tally]:
    """The peer has no long-poll: its client polls the job every PEER_POLL_INTERVAL."""

    def op(conn: Any) -> bool:
        status, body = request(conn, "POST", "/v1/jobs", job())
        if status != 202:
            return False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, env = request(conn, "GET", f"/v1/jobs/{body['id']}")
            if status == 200 and env["status"] == "succeeded":
                return True
            time.sleep(PEER_POLL_INTERVAL)
        return False

    run_threads(port, CLIENTS, 2.0, 50, op)
    tally, wall = run_threads(port, CLIENTS, E2E_SECONDS, E2E_JOBS, op)
    return tally.ok / wall, tally


def e2e_bare(env: dict[str, str]) -> tuple[float, Tally]:
    os.environ.update(env)
    from benchmarks.bare_celery import app, noop

    tally = Tally()
    deadline = time.monotonic() + E2E_SECONDS
    counter = iter(range(E2E_JOBS + 50))
    lock = threading.Lock()

    def client(count_from: int) -> None:
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            t0 = time.perf_counter()
            try:
                ok = noop.apply_async().get(timeout=10) == {"ok": True}
            except Exception:  # counted as an error
                ok = False
            if n >= 50:  # the first 50 are warm-up
                tally.add(ok, time.perf_counter() - t0)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.close()
    return tally.ok / (time.perf_counter() - start), tally


def cost_breakdown(env: dict[str, str], n: int = 200) -> dict[str, float]:
    """Where a submit spends its time, in-process against the real services (ms per submit)."""
    os.environ.update(env)
    from app import create_app
    from app.jobs import broker
    from app.runtime import runtime

    app = create_app()
    rt, celery = runtime(app), app.extensions["celery"]
    create = publish = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        job_id = rt.store.create(
            owner="bench", target="example.org", collectors=["noop"], options={}, labels={}
        )["id"]
        t1 = time.perf_counter()
        broker.publish(celery, rt, job_id, ["noop"], owner="bench", request_id=None)
        t2 = time.perf_counter()
        create, publish = create + (t1 - t0), publish + (t2 - t1)
    t0 = time.perf_counter()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = AUTH["Authorization"]
    for _ in range(n):
        client.post("/v1/jobs", json=job())
    whole = time.perf_counter() - t0
    return {
        "store.create_ms": round(create / n * 1000, 3),
        "publish_confirmed_ms": round(publish / n * 1000, 3),
        "whole_view_in_process_ms": round(whole / n * 1000, 3),
    }


def collector_rows() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each collector vs a bare loop of its library (benchmarks/collectors.py)."""
    from benchmarks import collectors

    rows = []
    print("dns: DnsCollector vs bare dnspython (local dnslib server, sequential)...", flush=True)
    ours, bare = collectors.dns_rates()
    rows.append(_simple_row("dns (ops/s)", ours, bare, 0.7))
    print("tls: TlsCollector vs bare ssl handshake loop (local trustme server)...", flush=True)
    ours, bare = collectors.tls_rates()
    rows.append(_simple_row("tls (ops/s)", ours, bare, 0.7))
    if not os.access(collectors.CHROMIUM, os.X_OK):
        print(f"screenshot: skipped, no Chromium at {collectors.CHROMIUM}")
        return rows, {}
    print(
        f"screenshot: ScreenshotCollector vs bare Playwright ({collectors.SHOT_PAGES} pages "
        "each, one browser, context per page; best of two alternating runs)...",
        flush=True,
    )
    shot_ours, shot_bare = collectors.screenshot_rates()
    rows.append(
        _simple_row("screenshot (pages/s)", shot_ours["pages_per_s"], shot_bare["pages_per_s"], 0.9)
    )
    memory = {"ours_pss_mb": round(shot_ours["pss_mb"]), "bare_pss_mb": round(shot_bare["pss_mb"])}
    return rows, {"screenshot_memory": memory}


def _simple_row(name: str, ours: float, base: float, target: float) -> dict[str, Any]:
    return {
        "bench": name,
        "ours": round(ours, 1),
        "baseline": round(base, 1),
        "ratio": round(ours / base, 3) if base else None,
        "target": target,
    }


def service_env(broker: str, prefix: str) -> dict[str, str]:
    """The service's settings in a bench: test profile, noop collector, no quotas."""
    return {
        "COLLECTQ_ENV": "test",
        "COLLECTQ_BROKER_URL": broker,
        "COLLECTQ_REDIS_URL": REDIS,
        "COLLECTQ_REDIS_PREFIX": prefix,
        "COLLECTQ_PLUGINS": "noop=benchmarks.noop:NoopCollector",
        "COLLECTQ_LOG_LEVEL": "WARNING",
        # the submit bench leaves thousands of jobs queued before a worker starts
        "COLLECTQ_MAX_QUEUED_JOBS": "0",
        # 16 clients (or every simulated user) long-poll with one key
        "COLLECTQ_MAX_WAITS_PER_CLIENT": "0",
        "COLLECTQ_METRICS_PORT": "0",  # no listener on the shared default port
    }


def drop_prefix(prefix: str) -> None:
    """Delete every Redis key of a bench's prefix."""
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


@contextmanager
def bench_env() -> Iterator[dict[str, str]]:
    """This run's settings: its own RabbitMQ vhost and Redis key prefix (both removed at the
    end) and a client's key in AUTH with limits the load cannot reach."""
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    with vhost() as vh:
        env = service_env(f"{AMQP}/{vh}", prefix)
        AUTH["Authorization"] = f"Bearer {_bench_key(prefix)}"
        try:
            yield env
        finally:
            drop_prefix(prefix)


def roundtrip_rows(env: dict[str, str]) -> dict[str, Any]:
    """Redis round trips of one submit and one poll, and per job in a worker
    (benchmarks/roundtrips.py)."""
    from benchmarks.roundtrips import per_job, round_trips

    counted = round_trips(env, AUTH)
    rows: dict[str, dict[str, float]] = {
        kind: {"total": sum(c.values()), **c} for kind, c in counted.items()
    }
    n = 20
    for collector, (per, spent) in per_job(n).items():
        each = {cmd: round(count / n, 2) for cmd, count in spent.items()}
        rows[f"{collector} job (worker)"] = {"total": round(per, 2), **each}
    return rows


def _gunicorn(port: int, app: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", *GUNICORN, "--bind", f"127.0.0.1:{port}", app]


def celery_worker(
    app: str, queue: str, concurrency: str = WORKER_CONCURRENCY, *extra: str
) -> list[str]:
    """A baseline's Celery worker (threads pool), as collectq's worker runs."""
    return [
        *(sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue),
        *("-P", "threads", "-c", concurrency, "-l", "WARNING", "--without-mingle", *extra),
    ]


def api_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    """submit, poll and end to end: ours vs the bare ceilings and the hand-written peer."""
    broker = env["COLLECTQ_BROKER_URL"]
    peer_env = {
        "BENCH_BROKER_URL": broker,
        "BENCH_REDIS_URL": REDIS,
        "BENCH_PREFIX": env["COLLECTQ_REDIS_PREFIX"] + "peer:",
    }
    rows: list[dict[str, Any]] = []
    bare_port, peer_port, ours_port = free_port(), free_port(), free_port()
    print("submit: bare Flask, the peer, POST /v1/jobs (gunicorn 2 gevent, 16 clients, 5 s)")
    with process(
        _gunicorn(bare_port, "benchmarks.bare_flask:application"),
        env,
        http_ready(bare_port, "/v1/jobs"),
    ):
        bare_rate, bare_t = submit_rate(bare_port)
    with process(
        _gunicorn(peer_port, "benchmarks.peer:application"),
        peer_env,
        http_ready(peer_port, "/v1/jobs"),
    ):
        peer_rate, peer_t = submit_rate(peer_port, {})
        purge(broker, "peer")
        peer_job = request_once(peer_port, "POST", "/v1/jobs", job(), {})["id"]
        print("poll: the peer's GET (one Redis hash read) vs GET /v1/jobs/{id}", flush=True)
        peer_poll, peer_poll_t = poll_rate(peer_port, peer_job, {})
        print("end to end: the peer (submit, then poll every 10 ms)...", flush=True)
        with process(celery_worker("benchmarks.peer", "peer"), peer_env, lambda: True):
            time.sleep(3)  # no readiness probe; the warm-up absorbs the rest
            peer_e2e, peer_e2e_t = e2e_peer(peer_port)
    with process(_gunicorn(ours_port, "app.wsgi:application"), env, http_ready(ours_port)):
        ours_rate, ours_t = submit_rate(ours_port, AUTH)
        rows.append(_row("submit vs bare (req/s)", ours_rate, bare_rate, 0.3, ours_t, bare_t))
        rows.append(_row("submit vs peer (req/s)", ours_rate, peer_rate, 1.0, ours_t, peer_t))
        # The submit bench left thousands of queued noop jobs; the end-to-end bench
        # must not start behind that backlog (every wait would time out).
        purge(broker, "collect.noop")
        ours_job = request_once(ours_port, "POST", "/v1/jobs", job(), AUTH)["id"]
        ours_poll, ours_poll_t = poll_rate(ours_port, ours_job, AUTH)
        rows.append(_row("poll (req/s)", ours_poll, peer_poll, 0.7, ours_poll_t, peer_poll_t))
        print("end to end: noop jobs submit → terminal (long-poll)...", flush=True)
        worker = [
            *(sys.executable, "-m", "app.cli", "worker", "-Q", "collect.noop"),
            *("-c", WORKER_CONCURRENCY, "-P", "threads"),
        ]
        metrics_port = free_port()
        worker_env = {**env, "COLLECTQ_WORKER_METRICS_PORT": str(metrics_port)}
        with process(worker, worker_env, _worker_ready(ours_port)):
            ours_e2e, ours_e2e_t = e2e_ours(ours_port)
            print("end to end: the same, submit then GET ?wait= (two requests per job)...")
            two_e2e, two_e2e_t = e2e_ours(ours_port, in_one_request=False)
            print(f"latency: submit → collector start at {ours_e2e / 2:.0f} jobs/s (half)...")
            LATENCY.update(
                latency_row(
                    ours_port,
                    ours_e2e / 2,
                    latency.SECONDS,
                    AUTH,
                    worker_metrics=f"http://127.0.0.1:{metrics_port}/metrics",
                )
            )
    print("end to end: bare Celery apply_async → get...", flush=True)
    bare_env = {"BENCH_BROKER_URL": broker, "BENCH_RESULT_URL": REDIS.rsplit("/", 1)[0] + "/15"}
    with process(celery_worker("benchmarks.bare_celery", "bare"), bare_env, lambda: True):
        time.sleep(3)  # no cheap readiness probe without a result; the warm-up absorbs the rest
        bare_e2e, bare_e2e_t = e2e_bare(bare_env)
    rows.append(_row("e2e vs bare (jobs/s)", ours_e2e, bare_e2e, 0.7, ours_e2e_t, bare_e2e_t))
    rows.append(_row("e2e vs peer (jobs/s)", ours_e2e, peer_e2e, 1.0, ours_e2e_t, peer_e2e_t))
    rows.append(
        _row("e2e, submit + GET ?wait vs bare", two_e2e, bare_e2e, 0.7, two_e2e_t, bare_e2e_t)
    )
    return rows


def request_once(port: int, method: str, path: str, body: Any, auth: dict[str, str]) -> Any:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return request(conn, method, path, body, auth)[1]
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    """All benches, the worker drains of benchmarks.drain last; `python -m benchmarks
    api|ceilings|collectors|fanout|roundtrips` runs only those, `locust` the load test
    (benchmarks.locustrun), `latency` the latency row alone."""
    from benchmarks.fanout import fanout_rows

    RESULTS.mkdir(parents=True, exist_ok=True)
    if argv == ["collectors"]:
        return _finish(*collector_rows())
    if argv == ["fanout"]:
        return _finish(fanout_rows(), {})
    if argv[:1] in (["locust"], ["latency"]):
        from benchmarks import latency, locustrun

        return (locustrun if argv[0] == "locust" else latency).main(argv[1:])
    if argv == ["roundtrips"]:
        with bench_env() as env:
            print(json.dumps(roundtrip_rows(env), indent=2))
        return 0
    if argv == ["ceilings"]:
        from benchmarks.ceilings import broker_rate, redis_rates

        with bench_env() as env:
            found = {
                "redis_ops_per_s": redis_rates(),
                "broker_confirmed_publishes_per_s": round(broker_rate(env["COLLECTQ_BROKER_URL"])),
            }
        print(json.dumps(found, indent=2))
        (RESULTS / "ceilings.json").write_text(json.dumps(found, indent=2))
        return 0
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    with bench_env() as env:
        rows += api_rows(env)
        extra["cost_per_submit"] = cost_breakdown(env)
        extra["redis_round_trips"] = roundtrip_rows(env)
    extra["latency"] = dict(LATENCY)
    if argv == ["api"]:
        return _finish(rows, extra)
    more_rows, more = collector_rows()
    rows += more_rows + fanout_rows()
    from benchmarks.drain import TARGETS, drain_row

    print("the worker alone: one worker per queue drains jobs queued before it...", flush=True)
    extra["worker_drain"] = [drain_row(name) for name in TARGETS]
    return _finish(rows, {**extra, **more})


def _finish(rows: list[dict[str, Any]], extra: dict[str, Any]) -> int:
    _print(rows, extra)
    (RESULTS / "latest.json").write_text(json.dumps({"rows": rows, **extra}, indent=2))
    print(f"written {RESULTS / 'latest.json'}")
    return 0


def _bench_key(prefix: str) -> str:
    """A client's key (jobs:read, jobs:write: reads are owner-checked, as a user's are) in
    this run's Redis prefix, removed with the prefix at the end."""
    from app.auth.apikeys import KeyStore

    store = KeyStore(redis.Redis.from_url(REDIS), prefix)
    return store.create(
        owner="bench", name="bench", scopes=["jobs:read", "jobs:write"], rate_limits=UNLIMITED
    )[1]


def _worker_ready(port: int) -> Any:
    def check() -> bool:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/status", headers=AUTH)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
                return bool(json.load(r)["queues"]["collect.noop"]["workers"])
        except OSError:
            return False

    return check


def _row(
    name: str, ours: float, base: float, target: float, ot: Tally, bt: Tally
) -> dict[str, Any]:
    return {
        **_simple_row(name, ours, base, target),
        "ours_p50_ms": round(ot.pct(0.5), 1),
        "ours_p99_ms": round(ot.pct(0.99), 1),
        "baseline_p50_ms": round(bt.pct(0.5), 1),
        "baseline_p99_ms": round(bt.pct(0.99), 1),
        "ours_errors": ot.errors,
        "baseline_errors": bt.errors,
    }


def _print(rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    head = (
        f"{'bench':<22}{'ours':>10}{'baseline':>10}{'ratio':>8}{'target':>8}"
        "  p50/p99 ms ours | base   errors"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r['bench']:<22}{r['ours']:>10}{r['baseline']:>10}{r['ratio']:>8}{r['target']:>8}"
        if "ours_p50_ms" in r:
            line += (
                f"  {r['ours_p50_ms']}/{r['ours_p99_ms']} | "
                f"{r['baseline_p50_ms']}/{r['baseline_p99_ms']}"
                f"   {r['ours_errors']}/{r['baseline_errors']}"
            )
        if "worker_cpu_ms_per_fetch" in r:  # benchmarks/fanout.py
            line += f"  worker CPU {r['worker_cpu_ms_per_fetch']} ms/fetch, {r['done']}/{r['jobs']}"
        print(line)
    for k, v in extra.get("cost_per_submit", {}).items():
        print(f"  cost per submit: {k} = {v}")
    if extra.get("latency"):
        latency.summary(extra["latency"])
    for kind, counts in extra.get("redis_round_trips", {}).items():
        print(f"  Redis round trips per {kind}: {counts}")
    for k, v in extra.get("screenshot_memory", {}).items():
        print(f"  screenshot memory (process tree PSS): {k} = {v}")
    for d in extra.get("worker_drain", []):  # benchmarks/drain.py
        print(
            f"  worker alone, {d['collector']}: {d['jobs_per_s']} jobs/s, "
            f"{d['worker_cpu_ms_per_job']} ms CPU per job ({d['succeeded']}/{d['jobs']} succeeded)"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
