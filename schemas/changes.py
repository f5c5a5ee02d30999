"""Change detection: a schedule's options for it, and the change records it produces."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from schemas import FullMatch, StreamPageArgsSchema

__all__ = [
    "DEFAULT_SCREENSHOT_THRESHOLD",
    "DHASH_BITS",
    "SCREENSHOT_HASHES",
    "ChangeDetectionSchema",
    "ChangeListArgsSchema",
    "ChangeListSchema",
    "ChangeSchema",
    "DiffEntrySchema",
]

SCREENSHOT_HASHES = ("exact", "perceptual")
DHASH_BITS = 256  # bits of the perceptual hash (collectors.fingerprint)
DEFAULT_SCREENSHOT_THRESHOLD = 10  # bits of DHASH_BITS that may differ on the same page
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"  # RFC 9110 field-name


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class ChangeDetectionSchema(_Strict):
    """How a schedule's runs are compared (the schedule's `change_detection`)."""

    screenshot_hash = fields.String(
        load_default="exact",
        validate=validate.OneOf(SCREENSHOT_HASHES),
        metadata={
            "description": "`exact`: any pixel counts; `perceptual`: a difference hash of the "
            "image, so re-encoding and anti-aliasing do not (needs Pillow; else exact)"
        },
    )
    screenshot_threshold = fields.Integer(
        load_default=DEFAULT_SCREENSHOT_THRESHOLD,
        validate=validate.Range(min=0, max=DHASH_BITS),
        metadata={"description": f"perceptual: differing bits (of {DHASH_BITS}) still the same"},
    )
    http_headers = fields.List(
        fields.String(validate=FullMatch(_HEADER_NAME, error="not a valid header name")),
        load_default=list,
        validate=validate.Length(max=20),
        metadata={"description": "response headers whose value counts as content (e.g. ETag)"},
    )


class DiffEntrySchema(Schema):
    collector = fields.String(required=True)
    part = fields.String(
        required=True, metadata={"description": "e.g. body_sha256, A, not_after, dhash"}
    )
    before = fields.Raw(allow_none=True, metadata={"description": "shortened when long"})
    after = fields.Raw(allow_none=True)
    added = fields.List(fields.Raw(), metadata={"description": "list parts: new items"})
    removed = fields.List(fields.Raw(), metadata={"description": "list parts: items gone"})


class ChangeSchema(Schema):
    id = fields.String(required=True)
    schedule_id = fields.String(required=True)
    job_id = fields.String(required=True, metadata={"description": "the run that changed"})
    previous_job_id = fields.String(
        allow_none=True, metadata={"description": "the run it was compared with"}
    )
    at = fields.String(required=True)
    diff = fields.List(fields.Nested(DiffEntrySchema), required=True)


class ChangeListSchema(Schema):
    items = fields.List(fields.Nested(ChangeSchema), required=True)
    next_cursor = fields.String(allow_none=True)


class ChangeListArgsSchema(StreamPageArgsSchema):
    pass
