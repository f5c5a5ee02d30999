"""Run one collector call and turn every failure into a CollectorError.

Shared by the Celery task and the in-process CLI, so both produce the same
errors for the same failure.
"""

from __future__ import annotations

import logging
from typing import Any

from marshmallow import ValidationError

from collectors.base import CollectContext, Collector, CollectorError, InvalidTarget, Result

__all__ = ["CollectorCrashed", "run_collector_once"]

log = logging.getLogger("collectq.collectors")


class CollectorCrashed(CollectorError):
    """The collector raised something it should not have: a bug, recorded as a failure."""

    type = "collector_crashed"


def run_collector_once(
    collector: Collector,
    target: str,
    raw_options: dict[str, Any],
    ctx: CollectContext,
    passthrough: tuple[type[BaseException], ...] = (),
) -> Result | CollectorError:
    """Load options, collect, and return the Result or the error. `passthrough` propagates."""
    try:
        options = collector.options_schema().load(raw_options)
        return collector.collect(target, options, ctx)
    except passthrough:
        raise
    except ValidationError as exc:
        return InvalidTarget(f"invalid options: {exc.messages}")
    except CollectorError as exc:
        return exc
    except Exception as exc:
        log.exception("collector %s crashed", collector.name, extra={"job_id": ctx.job_id})
        return CollectorCrashed(f"{type(exc).__name__}: {exc}")
