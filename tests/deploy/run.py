"""`make test-deploy`: build the images, bring the whole compose stack up with podman, and
prove it works through the gateway (README "Deployment with compose"). Prints a table of
what ran and what it saw; always tears the stack down (`down -v`), even on failure.

Every request goes to 127.0.0.1 (the published gateway and Prometheus ports); every
collector target is the stack's own `target` container, in the subnet NET_ALLOW opens.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from tests.deploy.images import IMAGES, build
from tests.deploy.stack import ROOT, Stack

PROJECT = "collectqdeploytest"
SUBNET = "10.89.214.0/24"
GATEWAY = "http://127.0.0.1:18080"
PROMETHEUS = "http://127.0.0.1:19090"
TERMINAL = {"succeeded", "partial", "failed", "cancelled", "expired"}
rows: list[tuple[str, str, str]] = []


def row(step: str, ok: bool, seen: str) -> None:
    rows.append((step, "ok" if ok else "FAIL", seen))
    print(f"[{'ok' if ok else 'FAIL'}] {step}: {seen}", flush=True)


def http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw, status, kind = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return status, (json.loads(raw) if "json" in kind and raw else raw)


def write_secrets(d: Path) -> None:
    redis_pw, rabbit_pw = secrets.token_hex(16), secrets.token_hex(16)
    values = {
        "redis_password": redis_pw,
        "redis_url": f"redis://:{redis_pw}@redis:6379/0",
        "redis_exporter_passwords": json.dumps({"redis://redis:6379": redis_pw}),
        "rabbitmq_password": rabbit_pw,
        "broker_url": f"amqp://collectq:{rabbit_pw}@rabbitmq:5672//",
        "secret_key": secrets.token_hex(32),
        "flower_basic_auth": f"admin:{secrets.token_hex(12)}",
        "grafana_admin_password": secrets.token_hex(12),
    }
    for name, value in values.items():
        (d / name).write_text(value)
        (d / name).chmod(0o644)  # bind-mounted as is: uid 10001 must read them


def prometheus_config(d: Path) -> Path:
    """deploy/prometheus as it is, scraping every 5 s so the test need not wait 15, and
    asking DNS for the API and worker replicas every 5 s (the default is 30 s: a lookup made
    while a replica was not up yet would leave it out for that long)."""
    out = d / "prometheus"
    out.mkdir()
    for f in (ROOT / "deploy/prometheus").glob("*.yml"):
        text = f.read_text().replace("scrape_interval: 15s", "scrape_interval: 5s")
        text = text.replace("type: A\n", "type: A\n        refresh_interval: 5s\n")
        (out / f.name).write_text(text.replace("scrape_timeout: 10s", "scrape_timeout: 5s"))
    out.chmod(0o755)
    return out


def wait_job(token: str, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, job = http("GET", f"{GATEWAY}/v1/jobs/{job_id}?wait=20", token)
        if status == 200 and job["status"] in TERMINAL:
            return dict(job)
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} not finished after {timeout:.0f} s: {job}")
        if status != 200:
            time.sleep(1)


def submit(token: str, body: dict[str, Any]) -> str | None:
    status, answer = http("POST", f"{GATEWAY}/v1/jobs", token, body)
    return str(answer["id"]) if status == 202 else None


def step_build() -> None:
    took = {tag.split("/")[1]: build(tag) for tag in IMAGES}
    row("build images", True, ", ".join(f"{t} {s:.0f}s" for t, s in took.items()))


def step_up(stack: Stack) -> None:
    started = time.monotonic()
    stack.start_health_loop()
    stack.compose("up", "-d", "--no-build", timeout=900)
    states = stack.wait_healthy(300)
    per = Counter(stack.containers()[n] for n in states)
    seen = " ".join(f"{s}×{c}" if c > 1 else s for s, c in sorted(per.items()))
    row(
        "stack up, all healthy",
        True,
        f"{len(states)} containers in {time.monotonic() - started:.0f} s: {seen}",
    )
    row("api replicas", per["api"] == 2, f"{per['api']} api containers")


def step_job(stack: Stack, token: str) -> str:
    target_ip = stack.ip("target")
    cert = stack.exec("target", "cat", "/srv/cert.pem")
    body = {
        "target": "http://target/",
        "collectors": ["http", "dns", "tls", "screenshot"],
        "options": {
            "dns": {"nameserver": target_ip, "types": ["A"]},
            "tls": {"port": 443, "server_name": "target", "ca_pem": cert},
        },
    }
    job_id = submit(token, body)
    if job_id is None:
        raise RuntimeError(f"submit refused: {http('POST', f'{GATEWAY}/v1/jobs', token, body)}")
    job = wait_job(token, job_id)
    per = {name: r.get("status") for name, r in job["results"].items()}
    row(
        "job via gateway (4 collectors)",
        job["status"] == "succeeded",
        f"{job_id} {job['status']} {per} target=target ({target_ip})",
    )
    if job["status"] != "succeeded":
        print(json.dumps(job, indent=1)[:4000])
    return job_id


def step_sandbox(stack: Stack) -> None:
    """The screenshot worker: not root, under a seccomp filter, Chromium's sandbox on."""
    status = stack.exec("worker-screenshot", "cat", "/proc/1/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    uid = fields.get("Uid", "").split()[0] if fields.get("Uid") else "?"
    ok = fields.get("Seccomp", "").strip() == "2" and uid != "0"
    row(
        "screenshot worker sandbox",
        ok,
        f"uid {uid}, Seccomp {fields.get('Seccomp', '?').strip()} (2 = filter), NoNewPrivs "
        f"{fields.get('NoNewPrivs', '?').strip()}",
    )


def step_artifact(token: str, job_id: str) -> None:
    status, png = http("GET", f"{GATEWAY}/v1/jobs/{job_id}/artifacts/screenshot.png", token)
    ok = status == 200 and isinstance(png, bytes) and png.startswith(b"\x89PNG")
    row("screenshot artifact", ok, f"HTTP {status}, {len(png)} bytes, PNG={ok}")


def step_spread(stack: Stack, token: str) -> None:
    for _ in range(20):  # reads, spread by the gateway's round robin
        http("GET", f"{GATEWAY}/v1/jobs?limit=1", token)
    ips = {stack.ip_of(n): n for n in stack.of("api")}
    seen: Counter[str] = Counter()
    for line in stack.logs(stack.of("gateway")[0]).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for addr in str(entry.get("upstream_addr", "")).split(", "):
            host = addr.rpartition(":")[0]
            if host in ips:
                seen[ips[host]] += 1
    row(
        "requests per API replica",
        len(seen) == 2 and min(seen.values()) > 0,
        ", ".join(f"{n}: {c}" for n, c in sorted(seen.items()))
        + " (gateway access log upstream_addr)",
    )


def step_broker_restart(stack: Stack, token: str, n: int = 12) -> None:
    """Jobs accepted before, during and after `restart rabbitmq` all end `succeeded`."""
    body = {
        "target": "http://target/",
        "collectors": ["http", "dns"],
        "options": {"dns": {"nameserver": stack.ip("target"), "types": ["A"]}},
    }
    before = [j for j in (submit(token, body) for _ in range(n)) if j]
    restart = threading.Thread(target=stack.compose, args=("restart", "-t", "10", "rabbitmq"))
    restart.start()
    during: list[str | None] = []
    while restart.is_alive():  # the API answers 503 while the broker is away
        during.append(submit(token, body))
        time.sleep(0.2)
    restart.join()
    stack.wait_healthy(180)
    after = [j for j in (submit(token, body) for _ in range(4)) if j]
    mid = [j for j in during if j]
    jobs = before + mid + after
    ends = Counter(wait_job(token, j, timeout=240)["status"] for j in jobs)
    ok = ends.get("succeeded", 0) == len(jobs) and len(before) == n and len(after) == 4
    row(
        "rabbitmq restart mid-run",
        ok,
        f"accepted {len(before)} before, {len(mid)} of {len(during)} during (the rest "
        f"refused), {len(after)} after; every accepted job ended: {dict(ends)}",
    )


def step_prometheus(stack: Stack) -> None:
    deadline = time.monotonic() + 90
    up: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    while time.monotonic() < deadline:
        _, data = http("GET", f"{PROMETHEUS}/api/v1/targets")
        up, errors = {}, {}
        for t in data["data"]["activeTargets"]:
            up.setdefault(t["labels"]["job"], {})[t["labels"]["instance"]] = t["health"]
            if t["health"] != "up":
                errors[t["labels"]["instance"]] = t.get("lastError", "")
        if up and not errors:  # every target of deploy/prometheus/prometheus.yml
            break
        time.sleep(3)
    api_ok = "up" in up.get("collectq-api", {}).values()
    worker_ok = "up" in up.get("collectq-workers", {}).values()
    seen = "; ".join(
        f"{job}: " + ", ".join(f"{i}={h}" for i, h in sorted(t.items()))
        for job, t in sorted(up.items())
    )
    # the brief's bar: the API and a worker; the others are shown (and their errors below)
    row("prometheus targets", api_ok and worker_ok, seen)
    for instance, error in sorted(errors.items()):
        print(f"    {instance}: {error[:200]}")
    if not (api_ok and worker_ok):  # what discovery said (DNS errors are logged there)
        print(stack.logs(stack.of("prometheus")[0])[-3000:])


def _backups_done(files: list[str]) -> bool:
    """A finished backup of each (a `.part` file is one still being written and checked)."""
    return any(f.startswith("redis-") and f.endswith(".rdb") for f in files) and any(
        f.startswith("rabbitmq-") and f.endswith(".json") for f in files
    )


def step_backup(stack: Stack) -> None:
    deadline = time.monotonic() + 60
    files = stack.exec("backup", "ls", "/backups").split()
    while not _backups_done(files) and time.monotonic() < deadline:
        time.sleep(2)
        files = stack.exec("backup", "ls", "/backups").split()
    row("scheduled backup (first run)", _backups_done(files), " ".join(files) or "no files")


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="collectq-deploytest-"))
    tmp.chmod(0o755)
    (tmp / "secrets").mkdir(mode=0o755)
    write_secrets(tmp / "secrets")
    stack = Stack(
        PROJECT,
        {
            "COLLECTQ_SECRETS": str(tmp / "secrets"),
            "COLLECTQ_TEST_SUBNET": SUBNET,
            "COLLECTQ_NET_ALLOW": SUBNET,
            "COLLECTQ_NET_ALLOW_PRIVATE": "true",
            # the profile comes as the socket's default (tests/deploy/setup.sh)
            "COLLECTQ_SCREENSHOT_SECURITY_OPT": "no-new-privileges",
            "COLLECTQ_TEST_PROMETHEUS_DIR": str(prometheus_config(tmp)),
            "COLLECTQ_GATEWAY_PUBLISH": "127.0.0.1:18080",
            "COLLECTQ_FLOWER_PUBLISH": "127.0.0.1:15555",
            "COLLECTQ_PROMETHEUS_PUBLISH": "127.0.0.1:19090",
        },
    )
    started = time.monotonic()
    # SIGTERM (a CI timeout) unwinds like an error, so the stack still goes down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        stack.down()  # leftovers of an interrupted run
        step_build()
        step_up(stack)
        token = stack.exec(
            "api",
            "collectq",
            "keys",
            "create",
            "--owner",
            "deploytest",
            "--name",
            "deploytest",
            "--scope",
            "jobs:read,jobs:write",
            "-q",
        ).strip()
        row("API key (collectq keys create in api)", token.startswith("cq_"), token[:10] + "…")
        job_id = step_job(stack, token)
        step_artifact(token, job_id)
        step_sandbox(stack)
        step_spread(stack, token)
        step_prometheus(stack)
        step_backup(stack)
        step_broker_restart(stack, token)
    except Exception as exc:
        traceback.print_exc()
        row("error", False, str(exc)[:300])
        for name in stack.containers():
            print(f"--- {name}: {stack.health(name)}\n{stack.logs(name)[-1500:]}")
    finally:
        stack.stop_health_loop()
        stack.down()
        left = stack.containers()
        row("down -v", not left, f"{len(left)} containers left")
        shutil.rmtree(tmp, ignore_errors=True)
    failed = any(r[1] != "ok" for r in rows)
    width = max(len(r[0]) for r in rows)
    print(f"\nmake test-deploy ({time.monotonic() - started:.0f} s)")
    print(f"{'step'.ljust(width)}  res   seen")
    for step, res, seen in rows:
        print(f"{step.ljust(width)}  {res.ljust(4)}  {seen}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
