"""Options and result of the screenshot collector."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

__all__ = ["WAIT_UNTIL", "ScreenshotOptionsSchema", "ScreenshotResultSchema"]

WAIT_UNTIL = ("load", "domcontentloaded", "networkidle", "commit")


class ViewportSchema(Schema):
    class Meta:
        unknown = RAISE

    width = fields.Integer(load_default=1280, validate=validate.Range(min=100, max=3840))
    height = fields.Integer(load_default=720, validate=validate.Range(min=100, max=2160))


class ScreenshotOptionsSchema(Schema):
    """How to load and shoot the page; all waits together stay inside `timeout`."""

    class Meta:
        unknown = RAISE

    viewport = fields.Nested(ViewportSchema, load_default=lambda: {"width": 1280, "height": 720})
    full_page = fields.Boolean(
        load_default=False,
        metadata={"description": "the whole scrollable page instead of the viewport"},
    )
    wait_until = fields.String(load_default="load", validate=validate.OneOf(WAIT_UNTIL))
    wait_for_selector = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "CSS selector that must be visible before the shot"},
    )
    timeout = fields.Float(
        load_default=30.0,
        validate=validate.Range(min=1, max=55),
        metadata={"description": "seconds for everything: navigation, waits and the shot"},
    )
    delay = fields.Float(
        load_default=0.0,
        validate=validate.Range(min=0, max=10),
        metadata={"description": "seconds to wait after loading, before the shot"},
    )


class BlockedRequestSchema(Schema):
    host = fields.String(required=True)
    port = fields.Integer(required=True)
    error = fields.Dict(required=True, metadata={"description": "type blocked_address, detail"})


class ScreenshotTimingSchema(Schema):
    navigation_ms = fields.Float(required=True)
    screenshot_ms = fields.Float(required=True)
    total_ms = fields.Float(required=True)


class ScreenshotResultSchema(Schema):
    """The page as the browser saw it; the PNG itself is the `screenshot.png` artifact."""

    title = fields.String(required=True)
    final_url = fields.String(required=True)
    status_code = fields.Integer(required=True, allow_none=True)
    width = fields.Integer(required=True, metadata={"description": "of the PNG, in pixels"})
    height = fields.Integer(required=True)
    full_page = fields.Boolean(required=True)
    png_sha256 = fields.String(required=True)
    console_errors = fields.List(fields.String(), required=True)
    blocked_requests = fields.List(
        fields.Nested(BlockedRequestSchema),
        required=True,
        metadata={"description": "connections the network guard refused (subresources etc.)"},
    )
    connections = fields.Integer(required=True, metadata={"description": "connections opened"})
    browser_version = fields.String(required=True)
    timing = fields.Nested(ScreenshotTimingSchema, required=True)
