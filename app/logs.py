"""Logging: one configuration for every process, one line per event.

JSON (python-json-logger) when ``COLLECTQ_LOG_JSON`` is on (the staging and prod
profiles), readable text otherwise (dev, test). A JSON line holds `time` (ISO 8601,
UTC), `level`, `logger`, `message`, the log context fields that are known
(`app.logcontext.FIELDS`: request_id, job_id, task_id, collector, owner), the
record's other ``extra=`` fields, and `exc_info` for a traceback.

The API (`app.factory`, and the gunicorn master through `app.gunicornlog`), the
workers and beat (`app.worker` keeps Celery from replacing this configuration) and
the command line all call `configure_logging`. Secrets never reach a line: call sites
log none, and `scrub` hides what slips through (passwords in URLs, bearer tokens,
JWTs, API key secrets) in the finished line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _PJLFormatter

from app.logcontext import FIELDS, current
from app.scrub import scrub_text
from app.settings import Settings

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "build_handler",
    "configure",
    "configure_logging",
    "scrub",
]

# Record attributes that are never written as fields: the standard ones, and Celery's
# `data` (the arguments of its own messages, task args and return values included).
_NOT_EXTRA = frozenset(RESERVED_ATTRS) | {"message", "asctime", "data", *FIELDS}


def scrub(text: str) -> str:
    """`text` with credentials hidden (`app.scrub`; the last line of defence, not the first)."""
    return scrub_text(text)


class ContextFilter(logging.Filter):
    """Copies the log context (`app.logcontext`) onto every record it passes.

    A field given with ``extra=`` wins over the context's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


def _fields(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    """The context fields the record carries, then its other extras."""
    for key in FIELDS:
        value = getattr(record, key, None)
        if value is not None:
            yield key, value
    for key, value in vars(record).items():
        if key not in _NOT_EXTRA and not key.startswith("_"):
            yield key, value


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(_PJLFormatter):
    """One JSON object per line: time, level, logger, message, context, extras, exc_info."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _utc(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data.update(_fields(record))
        log_data.update(message_dict)  # exc_info, stack_info

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return scrub(str(super().serialize_log_record(log_data)))


class TextFormatter(logging.Formatter):
    """``12:00:01.234 INFO    collectq.jobs: message  request_id=… job_id=…`` (local time)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{time.strftime('%H:%M:%S', time.localtime(record.created))}.{record.msecs:03.0f}"

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        pairs = " ".join(f"{k}={_text(v)}" for k, v in _fields(record))
        lines = [
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.message}"
            + (f"  {pairs}" if pairs else "")
        ]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            lines.append(record.exc_text)
        if record.stack_info:
            lines.append(self.formatStack(record.stack_info))
        return scrub("\n".join(lines))


def _text(value: Any) -> str:
    text = str(value)
    return text if text and not any(c.isspace() or c == '"' for c in text) else json.dumps(text)


def build_handler(*, json_lines: bool, stream: IO[str] | None = None) -> logging.Handler:
    """The one handler of a process: stderr, JSON or text, with the log context."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure(*, json_lines: bool, level: str) -> None:
    """Configure the root logger once per process (idempotent; a fork inherits it)."""
    root = logging.getLogger()
    if getattr(root, "_collectq", False):
        return
    root.handlers[:] = [build_handler(json_lines=json_lines)]
    root.setLevel(level)
    logging.captureWarnings(True)  # a warning is a line like any other (`py.warnings`)
    root._collectq = True  # type: ignore[attr-defined]


def configure_logging(settings: Settings) -> None:
    """`configure` from the settings (COLLECTQ_LOG_JSON, COLLECTQ_LOG_LEVEL)."""
    configure(json_lines=settings.log_json, level=settings.log_level)
