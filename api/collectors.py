"""/v1/collectors: what can run, its queue, its option schema, its availability."""

from __future__ import annotations

from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields

from api.identity import requires
from app.jobs.names import collector_queue
from app.runtime import runtime
from collectors.registry import Registry

__all__ = ["blp", "document_collectors", "json_schema"]

blp = Blueprint("collectors", __name__, url_prefix="/v1/collectors", description="Collectors")


class CollectorInfoSchema(Schema):
    name = fields.String(required=True)
    queue = fields.String(required=True)
    available = fields.Boolean(required=True)
    reason = fields.String(allow_none=True)
    options_schema = fields.Dict(allow_none=True, metadata={"description": "JSON Schema"})
    result_schema = fields.Dict(allow_none=True, metadata={"description": "JSON Schema"})


class CollectorListSchema(Schema):
    items = fields.List(fields.Nested(CollectorInfoSchema), required=True)


@cache
def _converter() -> Any:
    plugin = MarshmallowPlugin()
    APISpec("collectq", "v1", "3.1.0", plugins=[plugin])
    return plugin.converter


def json_schema(schema: type[Schema]) -> dict[str, Any]:
    """The JSON Schema of a marshmallow schema class."""
    out: dict[str, Any] = _converter().schema2jsonschema(schema())
    return out


def document_collectors(api: Api, registry: Registry) -> None:
    """Put every collector's option and result schemas into the OpenAPI document.

    They become components ``<Name>Options`` / ``<Name>Result``, and the job
    request's ``options`` object names each collector's options schema.
    """
    schemas = api.spec.components.schemas
    refs: dict[str, Any] = {}
    for info in registry.infos():
        if info.collector is None:
            continue
        title = info.name.title().replace("_", "")
        api.spec.components.schema(f"{title}Options", schema=info.collector.options_schema)
        api.spec.components.schema(f"{title}Result", schema=info.collector.result_schema)
        refs[info.name] = {"$ref": f"#/components/schemas/{title}Options"}
    options = schemas.get("JobRequest", {}).get("properties", {}).get("options")
    if options is not None:
        options["properties"] = refs
        options["description"] += "; each collector's data has the <Name>Result shape"


@blp.route("")
@requires("jobs:read", "read")
@blp.response(200, CollectorListSchema)
def list_collectors() -> Any:
    """Every installed collector, with the reason when it is unavailable."""
    items = []
    for info in runtime().registry.infos():
        c = info.collector
        items.append(
            {
                "name": info.name,
                "queue": collector_queue(info.name),
                "available": info.available,
                "reason": info.reason,
                "options_schema": json_schema(c.options_schema) if c else None,
                "result_schema": json_schema(c.result_schema) if c else None,
            }
        )
    return {"items": items}
