"""The log context: who and what the current code runs for, carried by every log line.

A context variable holds the correlation fields (`FIELDS`) of the request or the task
being handled; the log handler's filter (`app.logs`) copies them onto each record, so
no call site passes them with ``extra=``. Bound by the API per request
(`api.requests`, `api.identity`) and by the worker per task (`app.tasklog`).

A context variable is per thread (and per greenlet, per asyncio task): the threads of
a gunicorn or Celery thread pool each see their own request's or task's fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType

__all__ = ["FIELDS", "bind", "clear", "current", "log_context", "reset"]

FIELDS = ("request_id", "job_id", "task_id", "collector", "owner")
_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("collectq_log_context", default=_EMPTY)


def current() -> Mapping[str, str]:
    """The fields bound now (read-only)."""
    return _context.get()


def bind(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add fields to the current context (None and "" are skipped); `reset` undoes it."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a log context field: {', '.join(sorted(unknown))}")
    added = {k: str(v) for k, v in fields.items() if v}
    return _context.set(MappingProxyType({**_context.get(), **added}))


def reset(token: Token[Mapping[str, str]]) -> None:
    """Restore the context as it was before the `bind` that returned `token`."""
    _context.reset(token)


def clear() -> None:
    """Forget every field (the start and the end of a request in a reused thread)."""
    _context.set(_EMPTY)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Bind `fields` for the body of a ``with`` block."""
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)
