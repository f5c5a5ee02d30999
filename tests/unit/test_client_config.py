"""The client's configuration: where the URL and the key come from, and the 0600 rule
for a config file that holds a key; the event-stream reader and the board's plain lines."""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.cli.clientconfig import DEFAULT_URL, ConfigProblem, load_client_config
from app.cli.clienthttp import ApiProblem, parse_events
from app.cli.progress import Board


def _config(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "client.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_key_and_url_come_from_a_private_config_file(tmp_path: Path) -> None:
    path = _config(tmp_path, 'url = "https://cq.example.org/"\napi_key = "cq_file"\n')
    config = load_client_config(None, {"COLLECTQ_CLIENT_CONFIG": str(path)})
    assert (config.url, config.api_key, config.key_source) == (
        "https://cq.example.org",
        "cq_file",
        str(path),
    )
    assert "cq_file" not in repr(config)


def test_a_config_file_with_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, 'api_key = "cq_file"\n', 0o644)
    with pytest.raises(ConfigProblem, match=r"mode is 0644 .*chmod 600"):
        load_client_config(None, {"COLLECTQ_CLIENT_CONFIG": str(path)})
    path.chmod(0o620)  # group-writable is as bad
    with pytest.raises(ConfigProblem, match="0620"):
        load_client_config(None, {"COLLECTQ_CLIENT_CONFIG": str(path)})


def test_a_config_file_without_a_key_may_be_readable(tmp_path: Path) -> None:
    path = _config(tmp_path, 'url = "http://cq.internal:8000"\n', 0o644)
    config = load_client_config(None, {"COLLECTQ_CLIENT_CONFIG": str(path)})
    assert (config.url, config.api_key) == ("http://cq.internal:8000", None)


def test_environment_and_option_win_over_the_file(tmp_path: Path) -> None:
    path = _config(tmp_path, 'url = "http://file:1"\napi_key = "cq_file"\n')
    env = {
        "COLLECTQ_CLIENT_CONFIG": str(path),
        "COLLECTQ_URL": "http://env:2",
        "COLLECTQ_API_KEY": "cq_env",
    }
    config = load_client_config(None, env)
    assert (config.url, config.api_key, config.key_source) == (
        "http://env:2",
        "cq_env",
        "COLLECTQ_API_KEY",
    )
    assert load_client_config("http://opt:3", env).url == "http://opt:3"
    secret = tmp_path / "key"
    secret.write_text("cq_secretfile\n")
    config = load_client_config(
        None, {**env, "COLLECTQ_API_KEY": "", "COLLECTQ_API_KEY_FILE": str(secret)}
    )
    assert config.api_key == "cq_secretfile"


def test_the_default_file_is_optional_a_named_one_is_not(tmp_path: Path) -> None:
    config = load_client_config(None, {"XDG_CONFIG_HOME": str(tmp_path)})
    assert (config.url, config.api_key) == (DEFAULT_URL, None)
    with pytest.raises(ConfigProblem, match="does not exist"):
        load_client_config(None, {"COLLECTQ_CLIENT_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api_key = \n", "not valid TOML"),
        ('apikey = "x"\n', "unknown setting"),
        ("url = 5\n", "must be a non-empty string"),
        ('url = "ftp://x"\n', "not an http"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ConfigProblem, match=message):
        load_client_config(None, {"COLLECTQ_CLIENT_CONFIG": str(path)})


def test_field_errors_of_a_problem_are_flattened_to_paths() -> None:
    problem = ApiProblem(
        422,
        {
            "title": "Unprocessable Entity",
            "detail": "the request has invalid fields",
            "errors": {"collectors": {"1": ["not a collector name"]}, "target": ["bad"]},
        },
    )
    assert problem.field_errors() == [("collectors.1", "not a collector name"), ("target", "bad")]


def test_event_stream_parsing_keeps_ids_and_drops_keepalives() -> None:
    body = [
        b": keep-alive\n",
        b"id: 1-0\n",
        b"event: collector\n",
        b'data: {"collector": "http",\n',
        b'data:  "status": "running"}\n',
        b"\n",
        b"retry: 500\n",
        b"\n",
        b"id: 2-0\r\n",
        b"event: done\r\n",
        b"data: {}\r\n",
        b"\r\n",
    ]
    events = list(parse_events(iter(body)))
    assert [(e.event, e.id) for e in events] == [("collector", "1-0"), ("done", "2-0")]
    assert events[0].json() == {"collector": "http", "status": "running"}


def test_board_prints_one_plain_line_per_change_when_not_a_terminal() -> None:
    out = io.StringIO()
    board = Board(out, ["http", "flaky"], live=False)
    board.update({"http": {"status": "queued", "attempts": 0}, "flaky": {"status": "queued"}})
    board.update({"http": {"status": "queued", "attempts": 0}, "flaky": {"status": "running"}})
    board.update(
        {
            "http": {"status": "succeeded", "attempts": 1, "duration_ms": 12.0},
            "flaky": {"status": "retrying", "attempts": 1},
        }
    )
    assert out.getvalue().splitlines() == [
        "[1/2] http   queued",
        "[2/2] flaky  queued",
        "[2/2] flaky  running",
        "[1/2] http   succeeded  0.01 s",
        "[2/2] flaky  retrying",
    ]


def test_board_on_a_terminal_redraws_its_block_in_place() -> None:
    out = io.StringIO()
    board = Board(out, ["a", "b"], live=True)
    board.update({"a": {"status": "running"}, "b": {"status": "queued"}})
    board.update({"a": {"status": "succeeded", "duration_ms": 1000.0, "attempts": 2}})
    board.close()
    assert out.getvalue() == (
        "\x1b[K[1/2] a  running\n\x1b[K[2/2] b  queued\n"
        "\x1b[2F\x1b[K[1/2] a  succeeded  1.00 s  attempt 2\n\x1b[K[2/2] b  queued\n"
    )


def test_board_on_a_terminal_counts_a_running_collectors_seconds() -> None:
    out = io.StringIO()
    board = Board(out, ["http"], live=True)
    started = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
    board.update({"http": {"status": "running", "attempts": 1, "started_at": started}})
    first = out.getvalue()
    assert re.fullmatch(r"\x1b\[K\[1/1\] http  running    2\.\d\d s\n", first)
    time.sleep(Board.TICK * 2.5)  # no new result: the ticker redraws the count anyway
    board.close()
    later = out.getvalue()[len(first) :].split("\x1b[1F")
    assert len(later) >= 2
    assert re.fullmatch(r"\x1b\[K\[1/1\] http  running    [3-9]\.\d\d s\n", later[-1])


def test_board_lines_are_cut_to_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "30")  # a wrapped line would break the redraw's line count
    out = io.StringIO()
    board = Board(out, ["flaky"], live=True)
    error = {"type": "connect_error", "detail": "planned failure 1/1", "retryable": True}
    board.update({"flaky": {"status": "retrying", "attempts": 1, "error": error}})
    board.close()
    assert out.getvalue() == "\x1b[K[1/1] flaky  retrying   conne\n"  # 29 characters
