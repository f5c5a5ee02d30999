"""A collector that does nothing: measures the pipeline, not a target."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields

from collectors.base import CollectContext, Collector, Result


class NoopOptionsSchema(Schema):
    class Meta:
        unknown = RAISE


class NoopResultSchema(Schema):
    ok = fields.Boolean()


class NoopCollector(Collector):
    name = "noop"
    options_schema = NoopOptionsSchema
    result_schema = NoopResultSchema

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        return Result(data={"ok": True})
