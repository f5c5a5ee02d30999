"""What a job may say about a collector's policy: ``options.<collector>.retries``.

A job can narrow its collector's policy, never widen it: `retries` from 0 up to the
policy's own (`GET /v1/collectors` shows each policy). These keys sit among the
collector's options but are the job layer's, not the collector's: they are split off
before the collector's options schema sees the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["POLICY_OPTIONS", "narrowing_errors", "policy_properties", "split_policy_options"]

POLICY_OPTIONS = ("retries",)


def split_policy_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the collector's own options, the policy keys the job gave)."""
    own = {k: v for k, v in options.items() if k not in POLICY_OPTIONS}
    return own, {k: v for k, v in options.items() if k in POLICY_OPTIONS}


def narrowing_errors(narrowing: Mapping[str, Any], retries_max: int) -> dict[str, list[str]]:
    """What is wrong with the policy keys of a job (empty: nothing)."""
    if "retries" not in narrowing:
        return {}
    value = narrowing["retries"]
    # JSON Schema's integer: 1.0 is one (as marshmallow's Integer takes it)
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if not whole or isinstance(value, bool) or value < 0:
        return {"retries": ["must be an integer, at least 0"]}
    if value > retries_max:
        return {"retries": [f"at most {retries_max}: this collector's policy allows no more"]}
    return {}


def policy_properties(retries_max: int) -> dict[str, Any]:
    """The JSON Schema properties of the policy keys, for a collector's options."""
    return {
        "retries": {
            "type": "integer",
            "minimum": 0,
            "maximum": retries_max,
            "description": "retries of a transient failure for this job: fewer than the "
            "collector's policy allows (GET /v1/collectors), never more",
        }
    }
