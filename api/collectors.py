"""/v1/collectors: what can run, its queue, its option schema, its availability."""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields

from api.identity import requires
from app.jobs.names import collector_queue
from app.options import CollectorPolicy
from app.runtime import runtime
from app.settings import Settings
from collectors.registry import Registry
from schemas import IP_PATTERN, IPV4_PATTERN, IPV6_PATTERN
from schemas.dns import DnsOptionsSchema
from schemas.http import FORBIDDEN_HEADERS, HttpOptionsSchema
from schemas.job import TARGET_FORMS, JobRequestSchema
from schemas.policy import policy_properties

__all__ = ["blp", "document_checks", "document_collectors", "extend_converter", "json_schema"]

blp = Blueprint("collectors", __name__, url_prefix="/v1/collectors", description="Collectors")


class PolicySchema(Schema):
    retries = fields.Integer(
        required=True, metadata={"description": "retries of a transient failure (at most)"}
    )
    backoff_base = fields.Float(required=True, metadata={"description": "first delay, s"})
    backoff_max = fields.Float(required=True, metadata={"description": "longest delay, s"})
    breaker_fail_max = fields.Integer(
        required=True, metadata={"description": "failures of one origin that open its breaker"}
    )
    breaker_reset_timeout = fields.Float(
        required=True, metadata={"description": "seconds open before one probe passes"}
    )
    host_concurrency = fields.Integer(
        required=True, metadata={"description": "calls in flight per host; 0: no cap"}
    )


class CollectorInfoSchema(Schema):
    name = fields.String(required=True)
    queue = fields.String(required=True)
    available = fields.Boolean(required=True)
    reason = fields.String(allow_none=True)
    options_schema = fields.Dict(allow_none=True, metadata={"description": "JSON Schema"})
    policy = fields.Nested(
        PolicySchema,
        required=True,
        metadata={"description": "the effective policy; a job may lower `retries`"},
    )
    result_schema = fields.Dict(allow_none=True, metadata={"description": "JSON Schema"})


class CollectorListSchema(Schema):
    items = fields.List(fields.Nested(CollectorInfoSchema), required=True)


# --- what the schemas check in code, said in JSON Schema -----------------------------------
# The document must say what the server accepts (docs/decisions.md, "Hardening: API
# surface"). apispec reads fields and their stock validators; these are the checks it
# cannot see. Each pattern accepts only what the check accepts.


def _anycase(word: str) -> str:
    # the names are letters and "-" (literal outside a class, in ECMA and Python alike)
    if not re.fullmatch("[A-Za-z-]+", word):
        raise ValueError(f"not a plain header name: {word!r}")
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


_FORBIDDEN = "|".join(_anycase(h) for h in sorted(FORBIDDEN_HEADERS))
_HEADER_NAME = rf"^(?!(?:{_FORBIDDEN})$)[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_VALUE = "^[\t\u0020-\u007e\u0080-\u00ff]*$"  # Latin-1, no control characters
_PREFIX4 = "(?:3[0-2]|[12]?[0-9])"
_PREFIX6 = "(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])"
_NETWORK = f"^(?:{IPV4_PATTERN[1:-1]}(?:/{_PREFIX4})?|{IPV6_PATTERN[1:-1]}(?:/{_PREFIX6})?)$"
_RATE = "^[0-9]{1,9}/(?:second|minute|hour|day|month|year)$"

CODE_CHECKS: dict[str, dict[str, dict[str, Any]]] = {
    HttpOptionsSchema.__name__: {
        "headers": {
            "propertyNames": {"pattern": _HEADER_NAME, "minLength": 1, "maxLength": 256},
            "additionalProperties": {"type": "string", "maxLength": 8192, "pattern": _HEADER_VALUE},
            "description": "extra request headers; Host and hop-by-hop ones are refused, and "
            "names must also be unique ignoring case (which JSON Schema cannot say)",
        },
    },
    DnsOptionsSchema.__name__: {"nameserver": {"pattern": IP_PATTERN}},
    # api.keys: schemas.keys checks these with ipaddress and limits
    "KeyCreateSchema": {
        "cidrs": {"items": {"type": "string", "maxLength": 64, "pattern": _NETWORK}},
        "rate_limits": {
            "additionalProperties": {"type": "string", "maxLength": 64, "pattern": _RATE},
        },
    },
}


def _dict2properties(
    self: Any, field: fields.Field[Any], ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """A Dict's bounds are on its entries, and its key field's validators name its keys."""
    if not isinstance(field, fields.Dict):
        return {}
    for length, count in (("minLength", "minProperties"), ("maxLength", "maxProperties")):
        if length in ret:
            ret[count] = ret.pop(length)
    key_field = field.key_field
    if key_field is not None and key_field.validators:
        names = {
            k: v
            for k, v in self.field2property(key_field).items()
            if k in ("pattern", "minLength", "maxLength", "enum")
        }
        if names:
            ret["propertyNames"] = names
    return {}


def extend_converter(converter: Any) -> None:
    """Teach an apispec converter what `_dict2properties` knows."""
    converter.add_attribute_function(_dict2properties)


@cache
def _converter() -> Any:
    plugin = MarshmallowPlugin()
    APISpec("collectq", "v1", "3.1.0", plugins=[plugin])
    extend_converter(plugin.converter)
    return plugin.converter


def _with_code_checks(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    for field, extra in CODE_CHECKS.get(name, {}).items():
        prop = schema.get("properties", {}).get(field)
        if prop is not None:
            prop.update(extra)
    return schema


def json_schema(schema: type[Schema]) -> dict[str, Any]:
    """The JSON Schema of a marshmallow schema class."""
    out: dict[str, Any] = _converter().schema2jsonschema(schema())
    return _with_code_checks(schema.__name__, out)


def document_checks(api: Api) -> None:
    """Add CODE_CHECKS to the components of the schemas that have them."""
    refs = api.ma_plugin.converter.refs  # (schema class, modifiers…) -> component name
    components = api.spec.components.schemas
    for key, component in refs.items():
        if component in components:
            _with_code_checks(key[0].__name__, components[component])


def options_json_schema(collector: type[Schema], policy: CollectorPolicy) -> dict[str, Any]:
    """A collector's options as JSON Schema, with the policy keys a job may set."""
    out = json_schema(collector)
    _add_policy_options(out, policy)
    return out


def _add_policy_options(schema: dict[str, Any], policy: CollectorPolicy) -> None:
    schema.setdefault("properties", {}).update(policy_properties(policy.retries))


def document_collectors(api: Api, registry: Registry, settings: Settings) -> None:
    """Put every collector's option and result schemas into the OpenAPI document.

    They become components ``<Name>Options`` / ``<Name>Result``. The job request
    says what the server accepts, from the registry as loaded at start: its
    ``collectors`` are the available ones, each at most once; ``options`` has a
    property per available collector (its ``<Name>Options``) and no other; ``target``
    is one of the forms of `TARGET_FORMS`. The job request schema checks options
    against the same registry (`JobRequestSchema.option_schemas`).
    """
    schemas = api.spec.components.schemas
    refs: dict[str, Any] = {}
    for info in registry.infos():
        if info.collector is None:
            continue
        title = info.name.title().replace("_", "")
        api.spec.components.schema(f"{title}Options", schema=info.collector.options_schema)
        _add_policy_options(schemas[f"{title}Options"], settings.policy_for(info.name))
        api.spec.components.schema(f"{title}Result", schema=info.collector.result_schema)
        if info.available:
            refs[info.name] = {"$ref": f"#/components/schemas/{title}Options"}
    JobRequestSchema.option_schemas = {
        i.name: i.collector.options_schema
        for i in registry.infos()
        if i.available and i.collector is not None
    }
    document_checks(api)
    request = schemas.get("JobRequest")
    if request is not None:
        _document_job_request(request, refs)


def _document_job_request(request: dict[str, Any], refs: dict[str, Any]) -> None:
    props = request["properties"]
    names = sorted(refs)
    props["collectors"]["items"] = (
        {"type": "string", "enum": names}
        if names
        else {"not": {}, "description": "no collector is available"}
    )
    props["collectors"]["uniqueItems"] = True
    props["collectors"]["description"] = "available collectors (GET /v1/collectors), each once"
    options = props["options"]
    options["properties"] = refs
    options["additionalProperties"] = False
    options["description"] = (
        "per-collector options, keyed by available collector name (options of a collector "
        "the job does not run are checked, then ignored); each collector's data has the "
        "<Name>Result shape"
    )
    props["target"]["anyOf"] = [
        {"pattern": pattern, "maxLength": most} for pattern, most in TARGET_FORMS
    ]


@blp.route("")
@requires("jobs:read", "read")
@blp.response(200, CollectorListSchema)
def list_collectors() -> Any:
    """Every installed collector, with the reason when it is unavailable."""
    rt = runtime()
    items = []
    for info in rt.registry.infos():
        c = info.collector
        policy = rt.settings.policy_for(info.name)
        items.append(
            {
                "name": info.name,
                "queue": collector_queue(info.name),
                "available": info.available,
                "reason": info.reason,
                "options_schema": options_json_schema(c.options_schema, policy) if c else None,
                "policy": dataclasses.asdict(policy),
                "result_schema": json_schema(c.result_schema) if c else None,
            }
        )
    return {"items": items}
