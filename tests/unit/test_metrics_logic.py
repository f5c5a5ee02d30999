"""Metrics logic without services: buckets, the observer, queue wait, the metrics directory."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from app.jobs.breaker import breaker_collector
from app.jobs.broker import ENQUEUED_AT_HEADER
from app.jobs.context import JobObserver
from app.metrics import MetricsObserver
from app.metrics_scrape import breaker_bucket
from app.metrics_serve import MULTIPROC_VAR, use_multiproc_dir
from tasks.collect import _observe_wait


def test_breaker_buckets_are_bounded_two_digit_and_stable() -> None:
    buckets = {breaker_bucket(f"https://host{i}.example:443") for i in range(500)}
    assert buckets == {f"{i:02d}" for i in range(16)}
    assert breaker_bucket("https://a.example:443") == breaker_bucket("https://a.example:443")


def test_breaker_collector_names_the_collector_family_never_the_origin() -> None:
    assert breaker_collector("https://a.example:443") == "http"
    assert breaker_collector("http://a.example:80") == "http"
    assert breaker_collector("screenshot:https://a.example:443") == "screenshot"
    assert breaker_collector("flaky:http://127.0.0.1:80") == "flaky"  # a plugin's own
    assert breaker_collector("tls://a.example:443") == "tls"
    assert breaker_collector("dns://default:53/a.example") == "dns"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observer_feeds_the_contract_metrics() -> None:
    obs = MetricsObserver()
    before = {
        "attempts": _sample("collectq_collector_attempts_total", collector="unit"),
        "retries": _sample("collectq_collector_retries_total", collector="unit"),
        "finished": _sample("collectq_jobs_finished_total", collector="unit", status="failed"),
    }
    obs.started("unit")
    obs.ran("unit", "retrying", 0.5)
    obs.ran("unit", "failed", 0.25)
    obs.errored("unit", "timeout")
    obs.finished("unit", "failed")
    obs.submitted(["unit", "unit"])
    assert _sample("collectq_collector_attempts_total", collector="unit") == before["attempts"] + 1
    assert _sample("collectq_collector_retries_total", collector="unit") == before["retries"] + 1
    assert (
        _sample("collectq_jobs_finished_total", collector="unit", status="failed")
        == before["finished"] + 1
    )
    assert (
        _sample("collectq_collector_duration_seconds_count", collector="unit", outcome="failed")
        >= 1
    )
    assert _sample("collectq_collector_errors_total", collector="unit", error="timeout") >= 1
    assert _sample("collectq_jobs_submitted_total", collector="unit") >= 2


class _Waits(JobObserver):
    def __init__(self) -> None:
        self.waits: list[tuple[str, float]] = []

    def waited(self, queue: str, seconds: float) -> None:
        self.waits.append((queue, seconds))


class _Request(dict[str, Any]):
    def __init__(
        self, headers: dict[str, Any], eta: str | None = None, redelivered: bool = False
    ) -> None:
        super().__init__(headers)
        self.eta = eta
        self.delivery_info = {"redelivered": redelivered}


def _wait_of(request: _Request) -> list[tuple[str, float]]:
    obs = _Waits()
    _observe_wait(SimpleNamespace(observer=obs), request, "noop")  # type: ignore[arg-type]
    return obs.waits


def test_queue_wait_counts_from_publish_or_from_the_retry_eta() -> None:
    now = datetime.now(UTC).timestamp()
    [(queue, waited)] = _wait_of(_Request({ENQUEUED_AT_HEADER: now - 2.0}))
    assert queue == "collect.noop"
    assert 2.0 <= waited < 3.0
    eta = datetime.fromtimestamp(now - 0.5, UTC).isoformat()
    [(_, waited)] = _wait_of(_Request({ENQUEUED_AT_HEADER: now - 60}, eta=eta))
    assert 0.5 <= waited < 1.5  # from the ETA, not the first publish a minute ago


def test_queue_wait_skips_redeliveries_and_messages_without_the_header() -> None:
    assert _wait_of(_Request({ENQUEUED_AT_HEADER: 1.0}, redelivered=True)) == []
    assert _wait_of(_Request({})) == []


def test_each_server_gets_a_fresh_metrics_dir_and_dead_ones_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_VAR, "restored at teardown")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"api-{dead.pid}").mkdir()
    (tmp_path / f"api-{os.getppid()}").mkdir()  # a live server's
    mine = tmp_path / f"api-{os.getpid()}"
    mine.mkdir()
    (mine / "counter_1.db").write_bytes(b"old life")
    path = use_multiproc_dir(SimpleNamespace(metrics_dir=str(tmp_path)), "api")  # type: ignore[arg-type]
    assert path == mine
    assert list(path.iterdir()) == []
    assert os.environ[MULTIPROC_VAR] == str(path)
    assert not (tmp_path / f"api-{dead.pid}").exists()
    assert (tmp_path / f"api-{os.getppid()}").exists()
