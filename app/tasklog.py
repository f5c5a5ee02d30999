"""The log context of a Celery task: every line a job causes in the worker names it.

`task_prerun` binds the task's fields (`app.logcontext`) in the process or thread that
runs the task, `task_postrun` unbinds them: the collector's lines, the store's, a retry's
and Celery's own "Task … succeeded" / "retry" lines all carry task_id, job_id, collector
the request_id of the API request that published the job and the job's owner (the
headers `app.jobs.broker.publish` sets; `Task.retry` copies a request's custom headers
into the retried message, so a retry keeps them; the reaper's requeue sends them again
from the job record).

Celery logs some lines about a task in the worker's main process, outside any task
(received, a hard time limit): `TaskRecordFilter` reads the task id and name Celery
passes with them and adds task_id, job_id and collector.
"""

from __future__ import annotations

import logging
from contextvars import Token
from typing import Any

from celery import Task
from celery.signals import task_postrun, task_prerun

from app.jobs.broker import OWNER_HEADER, REQUEST_ID_HEADER
from app.jobs.names import collector_task
from app.logcontext import bind, clear, reset

__all__ = ["TaskRecordFilter", "connect_task_logging", "task_fields"]

# task id → the token that undoes its bind (a thread pool runs several tasks at once)
_tokens: dict[str, Token[Any]] = {}


def task_fields(task_name: str, task_id: str) -> dict[str, str]:
    """task_id, plus job_id and collector for a collector task (id ``<job_id>.<collector>``)."""
    fields = {"task_id": task_id}
    job_id, _, collector = task_id.rpartition(".")
    if job_id and collector_task(collector) == task_name:
        fields.update(job_id=job_id, collector=collector)
    return fields


def _bind_task(task_id: str, task: Task, **_: Any) -> None:  # type: ignore[type-arg]
    request_id, owner = (task.request.get(h) for h in (REQUEST_ID_HEADER, OWNER_HEADER))
    _tokens[task_id] = bind(
        **task_fields(task.name, task_id),
        request_id=request_id if isinstance(request_id, str) else None,
        owner=owner if isinstance(owner, str) else None,
    )


def _unbind_task(task_id: str, **_: Any) -> None:
    token = _tokens.pop(task_id, None)
    if token is None:
        return
    try:
        reset(token)
    except ValueError:  # bound in another context (cannot happen in a pool): start clean
        clear()


class TaskRecordFilter(logging.Filter):
    """Adds task_id, job_id, collector to Celery's lines about a task outside its run."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if getattr(record, "task_id", None) is None and isinstance(data, dict):
            task_id, name = data.get("id"), data.get("name")
            if isinstance(task_id, str) and isinstance(name, str):
                for key, value in task_fields(name, task_id).items():
                    setattr(record, key, value)
        return True


def connect_task_logging() -> None:
    """Connect the task signals; add the record filter to the root logger's handlers.

    Called once by the worker entry module (`app.worker`), after logging is configured.
    """
    task_prerun.connect(_bind_task, weak=False, dispatch_uid="collectq.tasklog.bind")
    task_postrun.connect(_unbind_task, weak=False, dispatch_uid="collectq.tasklog.unbind")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TaskRecordFilter) for f in handler.filters):
            handler.addFilter(TaskRecordFilter())
