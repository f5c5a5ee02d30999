"""Collectors that exist only for tests, loaded through COLLECTQ_PLUGINS."""

from __future__ import annotations

import time
from typing import Any

from marshmallow import RAISE, Schema, fields

from collectors.base import CollectContext, Collector, Result, TargetConnectError

PLUGINS = "flaky=tests.plugins:FlakyCollector,noop=benchmarks.noop:NoopCollector"


class FlakyOptions(Schema):
    class Meta:
        unknown = RAISE

    fail_times = fields.Integer(load_default=0)
    sleep = fields.Float(load_default=0.0)


class FlakyResult(Schema):
    attempt = fields.Integer()


class FlakyCollector(Collector):
    """Fails with a transient connect error on the first `fail_times` attempts."""

    name = "flaky"
    options_schema = FlakyOptions
    result_schema = FlakyResult

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        if options["sleep"]:
            time.sleep(options["sleep"])
        if ctx.attempt <= options["fail_times"]:
            raise TargetConnectError(f"planned failure {ctx.attempt}/{options['fail_times']}")
        return Result(data={"attempt": ctx.attempt})
