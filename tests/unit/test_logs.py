"""Log lines: the JSON and text formats, the log context, the scrub, the API's request hooks."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from api.requests import init_requests
from app.auth.apikeys import format_token
from app.logcontext import bind, current, log_context
from app.logs import JsonFormatter, TextFormatter, build_handler, scrub
from app.settings import load_settings
from app.tasklog import TaskRecordFilter, task_fields
from tests.unit.test_settings import GOOD_PROD


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines through the one handler into a buffer."""
    out = io.StringIO()
    logger = logging.getLogger("collectq.test_logs")
    handler = build_handler(json_lines=True, stream=out)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def _records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_has_the_fields_in_order_and_the_context(lines) -> None:
    logger, out = lines
    with log_context(request_id="r-1", job_id="j_1", collector="http"):
        logger.info("hello %s", "world", extra={"client": "127.0.0.1"})
    logger.warning("outside")
    first, second = _records(out)
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["time"].endswith("Z")
    assert first["time"][10] == "T"
    assert first["level"] == "info"
    assert first["logger"] == "collectq.test_logs"
    assert first["message"] == "hello world"
    assert (first["request_id"], first["job_id"], first["collector"]) == ("r-1", "j_1", "http")
    assert first["client"] == "127.0.0.1"
    assert "request_id" not in second
    assert current() == {}


def test_an_explicit_extra_wins_over_the_context(lines) -> None:
    logger, out = lines
    with log_context(job_id="j_context"):
        logger.info("x", extra={"job_id": "j_extra"})
    assert _records(out)[0]["job_id"] == "j_extra"


def test_a_traceback_stays_on_one_json_line(lines) -> None:
    logger, out = lines
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        logger.exception("failed")
    assert len(out.getvalue().splitlines()) == 1
    assert "ValueError: broken" in _records(out)[0]["exc_info"]


def test_celery_s_data_argument_is_never_written(lines) -> None:
    logger, out = lines
    data = {"id": "j_1.http", "name": "collect.http", "args": "('secret-arg',)"}
    logger.info("Task %(name)s[%(id)s] received", data, extra={"data": data})
    assert "secret-arg" not in out.getvalue()
    assert _records(out)[0]["message"] == "Task collect.http[j_1.http] received"


def test_context_nests_and_resets_and_refuses_unknown_fields() -> None:
    with log_context(request_id="r"):
        with log_context(job_id="j", owner=None):
            assert current() == {"request_id": "r", "job_id": "j"}
        assert current() == {"request_id": "r"}
    assert current() == {}
    with pytest.raises(ValueError, match="not a log context field"):
        bind(api_key="x")


def test_each_thread_has_its_own_context() -> None:
    seen: list[dict[str, str]] = []
    with log_context(request_id="main"):
        t = threading.Thread(target=lambda: seen.append(dict(current())))
        t.start()
        t.join()
    assert seen == [{}]


def test_scrub_hides_credentials_that_slip_into_a_line() -> None:
    key = format_token("a1b2c3d4e5f6", "S" * 32)
    text = scrub(
        f"amqp://user:hunter2@rabbit/ key {key} "
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
        " Authorization: Bearer abcdefgh12345678"  # a header line is masked to its end
    )
    for secret in ("hunter2", "abcdefgh12345678", key, "S" * 32, "eyJzdWIiOiJhIn0"):
        assert secret not in text
    assert "amqp://user:***@rabbit/" in text
    assert "cq_a1b2c3d4e5f6_***" in text


def test_scrub_keeps_a_json_line_valid(lines) -> None:
    logger, out = lines
    logger.info("url", extra={"url": 'http://u:p@h/"x"', "next": "a@b"})
    (record,) = _records(out)
    assert record["url"] == 'http://u:***@h/"x"'
    assert record["next"] == "a@b"


def test_the_dev_console_format_is_readable_text() -> None:
    record = logging.LogRecord("collectq.jobs", logging.INFO, __file__, 1, "job %s", ("J",), None)
    with log_context(request_id="r-9", job_id="j_9"):
        build_handler(json_lines=False).filter(record)  # adds the context, as when logging
    text = TextFormatter().format(record)
    assert "INFO    collectq.jobs: job J  request_id=r-9 job_id=j_9" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_dev_logs_text_and_the_hardened_profiles_log_json(monkeypatch) -> None:
    assert not load_settings(env="dev").log_json
    assert isinstance(build_handler(json_lines=False).formatter, TextFormatter)
    for key, value in GOOD_PROD.items():
        monkeypatch.setenv(key, value)
    for env in ("staging", "prod"):
        assert load_settings(env=env).log_json
    assert isinstance(build_handler(json_lines=True).formatter, JsonFormatter)


def test_task_fields_split_a_collector_task_id_only() -> None:
    assert task_fields("collect.http", "j_1.http") == {
        "task_id": "j_1.http",
        "job_id": "j_1",
        "collector": "http",
    }
    assert task_fields("maintenance.reap", "3f2a-1") == {"task_id": "3f2a-1"}
    record = logging.makeLogRecord({"data": {"id": "j_2.dns", "name": "collect.dns"}})
    TaskRecordFilter().filter(record)
    assert (record.task_id, record.job_id, record.collector) == ("j_2.dns", "j_2", "dns")  # type: ignore[attr-defined]


def _api(out: io.StringIO) -> Flask:
    app = Flask("t")
    init_requests(app)

    @app.get("/v1/things/<thing>")
    def thing(thing: str) -> str:
        logging.getLogger("collectq.view").info("in the view")
        return thing

    for name in ("collectq.view", "collectq.access"):
        logger = logging.getLogger(name)
        logger.addHandler(build_handler(json_lines=True, stream=out))
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return app


@pytest.fixture
def api_lines() -> Iterator[tuple[Flask, io.StringIO]]:
    out = io.StringIO()
    yield _api(out), out
    for name in ("collectq.view", "collectq.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def test_a_request_s_lines_carry_its_request_id_and_one_access_line(api_lines) -> None:
    app, out = api_lines
    resp = app.test_client().get("/v1/things/a?token=x", headers={"X-Request-ID": "req-42"})
    assert resp.headers["X-Request-ID"] == "req-42"
    view, access = _records(out)
    assert view["message"] == "in the view"
    assert view["request_id"] == "req-42"
    assert access["logger"] == "collectq.access"
    assert access["request_id"] == "req-42"
    assert access["message"] == "GET /v1/things/a 200"  # no query string
    assert (access["method"], access["route"], access["status"]) == (
        "GET",
        "/v1/things/<thing>",
        200,
    )
    assert isinstance(access["duration_ms"], float)
    assert current() == {}  # nothing stays bound in the thread after the request


@pytest.mark.parametrize("bad", ["two words", "x" * 129, "a/b", "naïve", ""])
def test_an_invalid_request_id_is_replaced_and_the_new_one_logged(api_lines, bad) -> None:
    app, out = api_lines
    resp = app.test_client().get("/nowhere", headers={"X-Request-ID": bad})
    rid = resp.headers["X-Request-ID"]
    assert rid != bad
    assert len(rid) == 24
    (access,) = _records(out)
    assert (access["request_id"], access["route"], access["status"]) == (rid, "unmatched", 404)


def test_scrub_keeps_escaped_quotes_of_a_json_line(lines) -> None:
    logger, out = lines
    logger.info('password="pw" and Authorization: "Bearer x"', extra={"h": 'Cookie: a="b"'})
    (record,) = _records(out)  # still one valid JSON object
    for secret in ("pw", "Bearer x", 'a="b"'):
        assert secret not in record["message"] + record["h"]
