"""Pure logic: ids, backoff, target validation, request schema, job status rule."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from app.jobs.backoff import backoff_delay
from app.jobs.ids import id_floor, new_id
from schemas.job import JobRequestSchema, validate_target
from schemas.status import final_job_status


def test_ids_sort_by_creation_time() -> None:
    ids = [new_id("j_", now=t) for t in (1000.0, 1000.001, 2000.0)]
    assert ids == sorted(ids)
    assert len(ids[0]) == 28
    assert id_floor("j_", 1000.0) <= ids[0] < id_floor("j_", 1000.002)


@pytest.mark.parametrize("attempt", [1, 2, 3, 8])
def test_backoff_full_jitter_stays_within_bounds(attempt: int) -> None:
    ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
    assert backoff_delay(attempt, base=1, cap=60, rand=lambda: 0.0) == 0.0
    assert backoff_delay(attempt, base=1, cap=60, rand=lambda: 0.999999) == pytest.approx(
        ceiling, rel=1e-3
    )


def test_backoff_honours_retry_after_but_caps_it() -> None:
    assert backoff_delay(1, base=1, cap=60, retry_after=7, rand=lambda: 0.1) == 7
    assert backoff_delay(1, base=1, cap=60, retry_after=3600, rand=lambda: 0.1) == 60


@pytest.mark.parametrize(
    "target",
    [
        "https://example.org",
        "http://127.0.0.1:8080/x?y=1",
        "example.org",
        "10.0.0.1",
        "[::1]",
        "::1",
    ],
)
def test_valid_targets(target: str) -> None:
    validate_target(target)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("ftp://example.org", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://user:pw@example.org", "credentials"),
        ("https://", "host"),
        ("https://example.org:99999", "port"),
        ("exa mple.org", "whitespace"),
        ("not_a host!", "whitespace"),
        ("bad!host", "not a valid host"),
    ],
)
def test_invalid_targets_say_why(target: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_target(target)


def test_request_schema_names_each_bad_field() -> None:
    with pytest.raises(ValidationError) as info:
        JobRequestSchema().load(
            {"target": "", "collectors": [], "labels": {"bad key": "v"}, "surprise": 1}
        )
    assert set(info.value.messages) == {"target", "collectors", "labels", "surprise"}


def test_request_schema_refuses_repeats_and_stray_options() -> None:
    with pytest.raises(ValidationError) as info:
        JobRequestSchema().load({"target": "a.org", "collectors": ["http", "http"]})
    assert "collectors" in info.value.messages
    # options of a collector the job does not run are checked and dropped (decisions.md);
    # options naming no available collector at all are refused
    with pytest.raises(ValidationError) as info:
        JobRequestSchema().load(
            {"target": "a.org", "collectors": ["http"], "options": {"nope": {}}}
        )
    messages = info.value.messages
    assert isinstance(messages, dict)
    assert "nope" in messages["options"]


@pytest.mark.parametrize(
    ("statuses", "job"),
    [
        (["succeeded", "succeeded"], "succeeded"),
        (["succeeded", "failed"], "partial"),
        (["failed", "failed"], "failed"),
        (["cancelled"], "cancelled"),
        (["failed", "cancelled"], "failed"),
    ],
)
def test_job_status_rule(statuses: list[str], job: str) -> None:
    assert final_job_status(statuses) == job
