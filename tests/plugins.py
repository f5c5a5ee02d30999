"""Collectors that exist only for tests, loaded through COLLECTQ_PLUGINS."""

from __future__ import annotations

import os
import time
from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from collectors.base import CollectContext, Collector, Result, TargetConnectError

PLUGINS = "flaky=tests.plugins:FlakyCollector,noop=benchmarks.noop:NoopCollector"


class FlakyOptions(Schema):
    class Meta:
        unknown = RAISE

    # bounded like every option of a real collector (the OpenAPI document says so)
    fail_times = fields.Integer(load_default=0, validate=validate.Range(0, 1000))
    sleep = fields.Float(load_default=0.0, validate=validate.Range(0, 3600))
    # sleep only on attempts up to this one (0: on every attempt)
    slow_attempts = fields.Integer(load_default=0, validate=validate.Range(0, 1000))
    # keep sleeping through the soft time limit (to reach the hard one)
    stubborn = fields.Boolean(load_default=False)
    # the process dies on every attempt (a poison message)
    crash = fields.Boolean(load_default=False)
    # a bug: raise a RuntimeError with this message (no CollectorError)
    bug = fields.String(load_default=None, validate=validate.Length(max=200))


class FlakyResult(Schema):
    attempt = fields.Integer()


class FlakyCollector(Collector):
    """Fails with a transient connect error on the first `fail_times` attempts."""

    name = "flaky"
    options_schema = FlakyOptions
    result_schema = FlakyResult

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        if options["crash"]:
            os._exit(13)
        if options["bug"]:
            raise RuntimeError(options["bug"])
        if options["sleep"] and (
            not options["slow_attempts"] or ctx.attempt <= options["slow_attempts"]
        ):
            self._sleep(options["sleep"], options["stubborn"])
        if ctx.attempt <= options["fail_times"]:
            raise TargetConnectError(f"planned failure {ctx.attempt}/{options['fail_times']}")
        return Result(data={"attempt": ctx.attempt})

    @staticmethod
    def _sleep(seconds: float, stubborn: bool) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                time.sleep(min(left, 0.1))
            except Exception:  # the soft time limit, when stubborn
                if not stubborn:
                    raise
