"""Health of the dependencies, for /ready and /v1/status."""

from __future__ import annotations

import platform
from importlib.metadata import version
from typing import Any

from celery import Celery
from redis.exceptions import RedisError

from app.jobs.broker import PUBLISH_ERRORS, queue_depths
from app.jobs.context import JobContext
from app.jobs.names import MAINTENANCE_QUEUE, collector_queue
from app.jobs.reaper import last_pass
from app.settings import redact_url

__all__ = ["broker_ok", "redis_ok", "service_status"]


def redis_ok(rt: JobContext) -> tuple[bool, str | None]:
    try:
        rt.redis.ping()
    except RedisError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, None


def broker_ok(celery: Celery, timeout: float) -> tuple[bool, str | None]:
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=int(timeout) or 1)
    except PUBLISH_ERRORS as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, None


def _workers(celery: Celery, timeout: float) -> dict[str, list[str]]:
    """Worker node names consuming each queue (empty lists if none answer)."""
    replies = celery.control.inspect(timeout=timeout).active_queues() or {}
    per_queue: dict[str, list[str]] = {}
    for node, queues in replies.items():
        for q in queues:
            per_queue.setdefault(q["name"], []).append(node)
    return per_queue


def service_status(rt: JobContext, celery: Celery, *, full: bool = True) -> dict[str, Any]:
    """The service's status: `full` for an admin, otherwise aggregate counts only.

    The full view names other tenants' target hosts (breakers), worker node names
    (machine names), service URLs and versions; a non-admin caller gets counts
    (docs/decisions.md, "Hardening: API surface").
    """
    timeout = min(2.0, rt.settings.publish_timeout)
    r_ok, r_err = redis_ok(rt)
    b_ok, b_err = broker_ok(celery, timeout)
    queues = [collector_queue(n) for n in rt.registry.available_names()] + [MAINTENANCE_QUEUE]
    depths: dict[str, int | None] = dict.fromkeys(queues)
    workers: dict[str, list[str]] = {}
    if b_ok:
        try:
            depths = queue_depths(celery, queues)
            workers = _workers(celery, 1.0)
        except PUBLISH_ERRORS as exc:
            b_ok, b_err = False, f"{type(exc).__name__}: {exc}"
    breakers: dict[str, Any] = {}
    reaper: dict[str, Any] = {}
    if r_ok:
        try:
            breakers = rt.breakers.states()
            reaper = last_pass(rt)
        except RedisError:
            pass
    status = "ok" if r_ok and b_ok else "degraded"
    if not full:
        return {
            "status": status,
            "redis": {"ok": r_ok},
            "broker": {"ok": b_ok},
            "queues": {
                q: {"depth": depths.get(q), "workers": len(workers.get(q, []))} for q in queues
            },
            "breakers": _breaker_counts(breakers),
            "reaper": reaper,
            "collectors": {i.name: {"available": i.available} for i in rt.registry.infos()},
        }
    return {
        "status": status,
        "redis": {"ok": r_ok, "error": r_err, "url": redact_url(rt.settings.redis_url)},
        "broker": {"ok": b_ok, "error": b_err, "url": redact_url(rt.settings.broker_url)},
        "queues": {q: {"depth": depths.get(q), "workers": workers.get(q, [])} for q in queues},
        "breakers": breakers,
        "reaper": reaper,
        "collectors": {
            i.name: {"available": i.available, "reason": i.reason} for i in rt.registry.infos()
        },
        "versions": {
            "collectq": version("collectq"),
            "celery": version("celery"),
            "python": platform.python_version(),
        },
    }


def _breaker_counts(states: dict[str, dict[str, Any]]) -> dict[str, int]:
    """How many hosts have a breaker, and how many of them are in each state."""
    counts = {"hosts": len(states), "open": 0, "half_open": 0, "closed": 0}
    for info in states.values():
        state = str(info.get("state", "closed")).replace("-", "_")
        if state in counts and state != "hosts":
            counts[state] += 1
    return counts
