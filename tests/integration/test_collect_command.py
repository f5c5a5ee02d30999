"""The collect command (app.jobs.collect) without Celery: real Redis, real collectors.

The Celery task only adapts this command, so its rules are tested here directly:
what is recorded, when it asks to be retried, and how it ends each way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from marshmallow import Schema, fields

from app.jobs.collect import Retry, collect, record_hard_time_limit
from app.jobs.context import JobContext
from app.runtime import build_runtime
from app.settings import load_settings
from collectors.base import Artifact, CollectContext, Collector, Result
from tests.conftest import REDIS_URL
from tests.plugins import PLUGINS

pytestmark = pytest.mark.integration


class Interrupted(Exception):
    """Stands for Celery's SoftTimeLimitExceeded, which the command never imports."""


class _Options(Schema):
    interrupt = fields.Boolean(load_default=False)


class _Result(Schema):
    ok = fields.Boolean()


class ArtifactCollector(Collector):
    """Returns one artifact, or is interrupted from outside (a soft time limit)."""

    name = "art"
    options_schema = _Options
    result_schema = _Result

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        if options["interrupt"]:
            raise Interrupted
        return Result({"ok": True}, [Artifact("art.txt", "text/plain", b"bytes")])


@pytest.fixture
def context() -> Iterator[Callable[..., JobContext]]:
    made: list[JobContext] = []

    def make(**overrides: Any) -> JobContext:
        settings = load_settings(
            redis_url=REDIS_URL,
            redis_prefix=f"tc{uuid.uuid4().hex[:8]}:",
            plugins=(*PLUGINS.split(","), f"art={__name__}:ArtifactCollector"),
            retry_backoff_base=0.01,
            retry_backoff_max=0.05,
            breaker_fail_max=0,
            **overrides,
        )
        ctx = build_runtime(settings)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        keys = list(ctx.redis.scan_iter(f"{ctx.settings.redis_prefix}*"))
        if keys:
            ctx.redis.delete(*keys)
        ctx.registry.close()


def _submit(ctx: JobContext, collector: str, options: dict[str, Any] | None = None) -> str:
    job: str = ctx.store.create(
        owner="o",
        target="http://127.0.0.1:9/",
        collectors=[collector],
        options={collector: options or {}},
        labels={},
    )["id"]
    return job


def _result(ctx: JobContext, job: str, collector: str) -> dict[str, Any]:
    envelope = ctx.store.get(job)
    assert envelope is not None
    result: dict[str, Any] = envelope["results"][collector]
    return result


def test_success_records_data_and_artifacts_without_urls(context) -> None:
    ctx = context()
    job = _submit(ctx, "art")
    assert collect(ctx, job, "art") == "final"
    result = _result(ctx, job, "art")
    assert (result["status"], result["attempts"], result["data"]) == ("succeeded", 1, {"ok": True})
    assert result["artifacts"] == [{"name": "art.txt", "content_type": "text/plain", "size": 5}]
    assert ctx.store.artifacts.get(job, "art.txt") == (b"bytes", "text/plain")
    assert ctx.store.status(job) == "succeeded"


def test_transient_failure_is_recorded_retrying_and_asks_for_a_retry(context) -> None:
    ctx = context()
    job = _submit(ctx, "flaky", {"fail_times": 1})
    retry = collect(ctx, job, "flaky")
    assert isinstance(retry, Retry)
    assert 0 <= retry.delay <= 0.05
    assert retry.error.type == "connect_error"
    result = _result(ctx, job, "flaky")
    assert (result["status"], result["error"]["type"]) == ("retrying", "connect_error")
    assert "retry_in_s" in result
    assert collect(ctx, job, "flaky") == "final"  # the next delivery
    result = _result(ctx, job, "flaky")
    assert (result["status"], result["attempts"], result["data"]) == (
        "succeeded",
        2,
        {"attempt": 2},
    )


def test_retries_exhausted_is_a_failure(context) -> None:
    ctx = context(max_retries=0)
    job = _submit(ctx, "flaky", {"fail_times": 5})
    assert collect(ctx, job, "flaky") == "final"
    result = _result(ctx, job, "flaky")
    assert (result["status"], result["error"]["type"]) == ("failed", "connect_error")
    assert ctx.store.status(job) == "failed"


def test_an_interrupt_from_outside_fails_with_time_limit(context) -> None:
    ctx = context()
    job = _submit(ctx, "art", {"interrupt": True})
    assert collect(ctx, job, "art", interrupts=(Interrupted,)) == "final"
    assert _result(ctx, job, "art")["error"]["type"] == "time_limit"


def test_a_delivery_after_too_many_crashes_gives_up(context) -> None:
    ctx = context(max_redeliveries=0)
    job = _submit(ctx, "flaky")
    ctx.store.begin(job, "flaky", heartbeat_timeout=30, max_redeliveries=0)  # died running
    assert collect(ctx, job, "flaky") == "final"
    result = _result(ctx, job, "flaky")
    assert (result["status"], result["error"]["type"]) == ("failed", "redelivery_limit")


def test_hard_time_limit_is_recorded_as_a_failure(context) -> None:
    ctx = context()
    job = _submit(ctx, "flaky")
    ctx.store.begin(job, "flaky", heartbeat_timeout=30, max_redeliveries=3)
    record_hard_time_limit(ctx, job, "flaky")
    result = _result(ctx, job, "flaky")
    assert (result["status"], result["error"]["type"]) == ("failed", "time_limit")


def test_gone_and_finished_jobs_are_skipped(context) -> None:
    ctx = context()
    assert collect(ctx, "j_" + "0" * 26, "flaky") == "missing"
    job = _submit(ctx, "flaky")
    ctx.store.cancel(job)
    assert collect(ctx, job, "flaky") == "skipped"
    assert _result(ctx, job, "flaky")["status"] == "cancelled"
