"""HTTP API v1 (flask-smorest): blueprints, OpenAPI document, local Swagger UI."""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from flask import Flask, send_from_directory
from flask.typing import ResponseReturnValue
from flask_smorest import Api
from swagger_ui_bundle import swagger_ui_path

from api import batch, changes, collectors, events, health, jobs, keys, legacy, schedules
from api.errors import init_errors
from api.identity import init_authenticate, init_authorize, public
from api.metrics import init_metrics
from api.ratelimit import init_ratelimit
from api.requests import init_body_rules, init_requests
from api.webguard import init_webguard
from api.webhooks import blp as webhooks_blp
from app.runtime import runtime
from schemas.errors import PROBLEM_CONTENT_TYPE, ProblemSchema

__all__ = ["init_api"]


class ProblemApi(Api):  # type: ignore[misc]
    """flask-smorest's Api whose documented error responses are our problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        default: str = self.DEFAULT_RESPONSE_CONTENT_TYPE  # type: ignore[has-type]
        self.DEFAULT_RESPONSE_CONTENT_TYPE = PROBLEM_CONTENT_TYPE
        try:
            super()._register_responses()
        finally:
            self.DEFAULT_RESPONSE_CONTENT_TYPE = default


SWAGGER_ASSETS = "/docs/assets/"


def _link(path: str, method: str, **parameters: str) -> dict[str, Any]:
    ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + f"/{method}"
    return {"operationRef": ref, "parameters": parameters}


_JOB = "/v1/jobs/{job_id}"
_KEY = "/v1/keys/{prefix}"
_JOB_LINKS = {
    "GetJob": _link(_JOB, "get", job_id="$response.body#/id"),
    "CancelJob": _link(_JOB, "delete", job_id="$response.body#/id"),
    "GetDeliveries": _link(f"{_JOB}/deliveries", "get", job_id="$response.body#/id"),
}
_KEY_LINKS = {
    "GetKey": _link(_KEY, "get", prefix="$response.body#/prefix"),
    "RevokeKey": _link(_KEY, "delete", prefix="$response.body#/prefix"),
    "RotateKey": _link(f"{_KEY}/rotate", "post", prefix="$response.body#/prefix"),
}
_SCHEDULE = "/v1/schedules/{schedule_id}"
_SCHEDULE_LINKS = {
    "GetSchedule": _link(_SCHEDULE, "get", schedule_id="$response.body#/id"),
    "UpdateSchedule": _link(_SCHEDULE, "patch", schedule_id="$response.body#/id"),
    "DeleteSchedule": _link(_SCHEDULE, "delete", schedule_id="$response.body#/id"),
    "PauseSchedule": _link(f"{_SCHEDULE}/pause", "post", schedule_id="$response.body#/id"),
    "ResumeSchedule": _link(f"{_SCHEDULE}/resume", "post", schedule_id="$response.body#/id"),
    "RunSchedule": _link(f"{_SCHEDULE}/run", "post", schedule_id="$response.body#/id"),
    "ListRuns": _link(f"{_SCHEDULE}/runs", "get", schedule_id="$response.body#/id"),
}
# OpenAPI links: where a created resource's id goes next (clients; schemathesis' stateful phase)
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("/v1/jobs", "post", "202"): _JOB_LINKS,
    ("/v1/jobs", "post", "200"): _JOB_LINKS,  # an earlier job reused (max_age)
    ("/collect", "post", "202"): _JOB_LINKS,
    ("/collect", "post", "200"): _JOB_LINKS,
    ("/v1/keys", "post", "201"): _KEY_LINKS,
    ("/v1/schedules", "post", "201"): _SCHEDULE_LINKS,
    (f"{_SCHEDULE}/run", "post", "202"): _JOB_LINKS,
    (f"{_KEY}/rotate", "post", "201"): {
        "GetKey": _link(_KEY, "get", prefix="$response.body#/key/prefix"),
        "GetPrevious": _link(_KEY, "get", prefix="$response.body#/previous/prefix"),
    },
}


class LinksPlugin(BasePlugin):
    """Adds LINKS to the responses they belong to."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        for (where, method, status), links in LINKS.items():
            op = (operations or {}).get(method) if where == path else None
            responses = (op or {}).get("responses", {})
            response = responses.get(status, responses.get(int(status)))  # str or int keys
            if response is not None:
                response["links"] = links


def init_api(app: Flask) -> Api:
    app.config.update(
        API_TITLE="collectq",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_ASSETS,
        API_SPEC_OPTIONS=_spec_options(),
    )
    api = ProblemApi(app, spec_kwargs={"extra_plugins": [LinksPlugin()]})
    collectors.extend_converter(api.ma_plugin.converter)
    for module in (jobs, batch, collectors, events, health, keys, legacy, schedules):
        api.register_blueprint(module.blp)
    api.register_blueprint(webhooks_blp)
    api.register_blueprint(changes.blp)  # GET /v1/schedules/{id}/changes
    collectors.document_collectors(api, runtime(app).registry, runtime(app).settings)
    schedules.document_schedules(api, runtime(app).settings)
    # Before-request order matters: id → who → rate limit (per who) → may they → body rules.
    init_metrics(app)  # first: its after-request hook runs last, on the final response
    init_requests(app)
    init_authenticate(app)
    init_ratelimit(app)
    init_authorize(app)
    init_body_rules(app)
    init_webguard(app)
    init_errors(app)

    @app.get(f"{SWAGGER_ASSETS}<path:filename>")
    @public
    def swagger_assets(filename: str) -> ResponseReturnValue:  # served locally: no CDN
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)

    return api


def _spec_options() -> dict[str, Any]:
    return {
        "info": {
            "description": (
                "Submit data-collection jobs (http, dns, tls, screenshot) and poll results. "
                "Every /v1 route needs an API key (`Authorization: Bearer cq_…` or "
                "`X-API-Key`) or a JWT with the scope the route names."
            ),
        },
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (cq_…) or a JWT",
                },
            },
        },
    }
