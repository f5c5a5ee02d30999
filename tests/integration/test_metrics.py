"""Prometheus metrics, live: a gunicorn API with two worker processes, a worker node and
Debian's Prometheus running the project's scrape config (tests/metricsenv.py).

One set of processes for the module; each test measures deltas, so the order of the
tests does not matter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from app.metrics_scrape import breaker_bucket
from tests.conftest import ROOT, free_port, wait_for
from tests.metricsenv import LiveStack, http, live_stack

pytestmark = pytest.mark.integration

PROMETHEUS = "/usr/bin/prometheus"
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition text, keyed by (name, labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= ls)


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def stack(vhost: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with live_stack(vhost, tmp_path_factory.mktemp("metrics"), api_workers=2) as s:
        yield s


def test_request_counters_and_latency_change_after_requests(stack: LiveStack) -> None:
    before = stack.api_metrics()
    n = 5
    for _ in range(n):
        assert stack.api("/v1/jobs")[0] == 200
    assert stack.api("/no/such/page/42")[0] == 404
    after = stack.api_metrics()
    route = {"route": "/v1/jobs", "method": "GET"}
    assert delta(before, after, "collectq_http_requests_total", **route, status="200") == n
    assert delta(before, after, "collectq_http_request_duration_seconds_count", **route) == n
    assert delta(before, after, "collectq_http_request_duration_seconds_sum", **route) > 0
    # a path no route matched is one label value, never the path itself
    assert value(after, "collectq_http_requests_total", route="unmatched", status="404") >= 1
    assert "/no/such/page/42" not in after


def test_collector_metrics_change_after_a_job_on_a_real_worker(stack: LiveStack) -> None:
    api0, w0 = stack.api_metrics(), stack.worker_metrics()
    job = stack.run_job(["noop", "flaky"], {"flaky": {"fail_times": 1}})
    assert job["status"] == "succeeded"
    api1, w1 = stack.api_metrics(), stack.worker_metrics()

    def worker(name: str, **labels: str) -> float:
        return delta(w0, w1, name, **labels)

    assert delta(api0, api1, "collectq_jobs_submitted_total", collector="noop") == 1
    assert delta(api0, api1, "collectq_jobs_submitted_total", collector="flaky") == 1
    assert worker("collectq_collector_attempts_total", collector="noop") == 1
    assert worker("collectq_collector_attempts_total", collector="flaky") == 2
    assert worker("collectq_collector_retries_total", collector="flaky") == 1
    assert worker("collectq_collector_errors_total", collector="flaky", error="connect_error") == 1
    duration = "collectq_collector_duration_seconds_count"
    for name in ("noop", "flaky"):
        assert worker("collectq_jobs_finished_total", collector=name, status="succeeded") == 1
        assert worker(duration, collector=name, outcome="succeeded") == 1
    assert worker(duration, collector="flaky", outcome="retrying") == 1
    # the first delivery of each, and the retry
    assert worker("collectq_queue_wait_seconds_count", queue="collect.flaky") == 2
    assert worker("collectq_queue_wait_seconds_count", queue="collect.noop") == 1
    # no owner, target or job id in any label
    for text in (api1, w1):
        assert job["id"] not in text
        assert "127.0.0.1/" not in text
        assert "owner" not in text


def test_scrape_time_gauges(stack: LiveStack) -> None:
    text = stack.api_metrics()
    assert value(text, "collectq_dependency_up", dependency="redis") == 1
    assert value(text, "collectq_dependency_up", dependency="broker") == 1
    assert value(text, "collectq_workers_online", queue="collect.noop") == 1
    assert value(text, "collectq_workers_online", queue="collect.http") == 0
    assert value(text, "collectq_queue_depth", queue="collect.noop") == 0
    assert value(text, "collectq_build_info", env="test") == 1
    # the maintenance.reap task (beat's tick) records its time
    sent = time.time()
    celery = Celery("t", broker=stack.env["COLLECTQ_BROKER_URL"], set_as_current=False)
    celery.send_task("maintenance.reap", queue="maintenance")

    def ticked() -> float:
        return value(stack.api_metrics(), "collectq_beat_last_tick_timestamp_seconds")

    assert wait_for(lambda: ticked() >= sent, timeout=10, interval=0.1)


def test_an_open_breaker_is_counted_in_its_hashed_bucket(stack: LiveStack) -> None:
    from app.jobs.breaker import Breakers
    from collectors.base import TargetConnectError

    origin = "http://127.0.0.1:9"
    breakers = Breakers(
        stack.env["COLLECTQ_REDIS_URL"], stack.env["COLLECTQ_REDIS_PREFIX"],
        fail_max=1, reset_timeout=60,
    )  # fmt: skip
    breakers.call(origin, lambda: TargetConnectError("refused"))
    text = stack.api_metrics()
    assert value(text, "collectq_breakers_open", collector="http") == 1
    assert value(text, "collectq_breakers_open", collector="http", bucket=breaker_bucket(origin))
    assert 0 <= value(text, "collectq_breaker_open_seconds_max", collector="http") < 30
    assert "127.0.0.1:9" not in text


def test_public_api_port_has_no_metrics(stack: LiveStack) -> None:
    assert http(f"http://127.0.0.1:{stack.api_port}/metrics")[0] == 404
    assert http(f"http://127.0.0.1:{stack.metrics_port}/metrics")[0] == 200


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _counter_pids(stack: LiveStack) -> set[int]:
    base = Path(stack.env["COLLECTQ_METRICS_DIR"]) / f"api-{stack.api_proc.pid}"
    return {int(p.stem.rsplit("_", 1)[1]) for p in base.glob("counter_*.db")}


def test_two_gunicorn_workers_sum_and_a_killed_worker_loses_no_count(stack: LiveStack) -> None:
    route = {"route": "/health", "method": "GET", "status": "200"}
    master = stack.api_proc.pid
    workers = wait_for(lambda: len(c := _children(master)) == 2 and c)
    start = value(stack.api_metrics(), "collectq_http_requests_total", **route)
    n = 12
    assert all(http(f"http://127.0.0.1:{stack.api_port}/health")[0] == 200 for _ in range(n))
    assert value(stack.api_metrics(), "collectq_http_requests_total", **route) == start + n
    # SIGKILL a worker that served requests: the master respawns it; the dead process's
    # counter file stays in the sum (prometheus_client's multiprocess semantics)
    victim = sorted(_counter_pids(stack) & workers)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in (c := _children(master)) and len(c) == 2, 20)
    assert value(stack.api_metrics(), "collectq_http_requests_total", **route) == start + n
    m = 6
    assert all(http(f"http://127.0.0.1:{stack.api_port}/health")[0] == 200 for _ in range(m))
    assert value(stack.api_metrics(), "collectq_http_requests_total", **route) == start + n + m
    assert len(_counter_pids(stack)) >= 2  # the dead worker's and a live one's


@pytest.fixture(scope="module")
def prometheus(stack: LiveStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus with deploy/prometheus/prometheus.yml, its collectq targets
    rewritten to this module's listeners (the exporters' jobs dropped), scraping every 1 s."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("no /usr/bin/prometheus: tests/services.sh installs Debian's prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"collectq-api", "collectq-workers", "flower", "rabbitmq", "redis"}
    for name, port in (
        ("collectq-api", stack.metrics_port),
        ("collectq-workers", stack.worker_metrics_port),
    ):  # the file finds targets by DNS (compose names): never resolved here, loopback only
        assert jobs[name].pop("dns_sd_configs")
        jobs[name]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    config["scrape_configs"] = [jobs["collectq-api"], jobs["collectq-workers"]]
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    for rules in config.get("rule_files", []):
        shutil.copy(CONFIG.parent / rules, work / rules)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError((work / "prometheus.log").read_text()[-3000:])
            return http(f"{url}/-/ready")[0] == 200

        wait_for(ready, 20, 0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    status, body = http(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    return list(json.loads(body)["data"]["result"])


def scalar(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_live_metrics_and_counts_the_jobs(
    stack: LiveStack, prometheus: str
) -> None:
    def both_up() -> bool:
        return all(
            scalar(prometheus, f'up{{job="{job}"}}') == 1
            for job in ("collectq-api", "collectq-workers")
        )

    assert wait_for(both_up, 15, 0.2)
    finished = 'sum(collectq_jobs_finished_total{collector="noop",status="succeeded"})'
    submitted = 'sum(collectq_jobs_submitted_total{collector="noop"})'
    done0 = value(stack.worker_metrics(), "collectq_jobs_finished_total", collector="noop")
    sent0 = value(stack.api_metrics(), "collectq_jobs_submitted_total", collector="noop")
    jobs = 3
    for _ in range(jobs):
        assert stack.run_job(["noop"])["status"] == "succeeded"
    assert wait_for(lambda: scalar(prometheus, finished) == done0 + jobs, 15, 0.2)
    assert wait_for(lambda: scalar(prometheus, submitted) == sent0 + jobs, 15, 0.2)
    assert scalar(prometheus, 'max(collectq_workers_online{queue="collect.noop"})') == 1


def test_an_unreachable_dependency_is_reported_down_and_the_scrape_still_answers(
    stack: LiveStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from app.metrics_scrape import ScrapeCollector
    from app.settings import load_settings

    closed = free_port()  # nothing listens there
    for key, val in stack.env.items():
        monkeypatch.setenv(key, val)
    monkeypatch.setenv("COLLECTQ_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{closed}//")
    monkeypatch.setenv("COLLECTQ_REDIS_URL", f"redis://127.0.0.1:{closed}/0")
    registry = CollectorRegistry()
    registry.register(ScrapeCollector(load_settings()))
    started = time.monotonic()
    text = generate_latest(registry).decode()
    assert time.monotonic() - started < 10
    assert value(text, "collectq_dependency_up", dependency="broker") == 0
    assert value(text, "collectq_dependency_up", dependency="redis") == 0
    assert "collectq_queue_depth{" not in text
    assert "collectq_workers_online{" not in text
    assert value(text, "collectq_build_info") == 1
