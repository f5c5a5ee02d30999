"""HTTP API v1 (flask-smorest): blueprints, OpenAPI document, local Swagger UI."""

from __future__ import annotations

from typing import Any

from flask import Flask, send_from_directory
from flask.typing import ResponseReturnValue
from flask_smorest import Api
from swagger_ui_bundle import swagger_ui_path

from api import collectors, health, jobs, legacy
from api.errors import init_errors
from api.requests import init_requests
from app.runtime import runtime

__all__ = ["init_api"]

SWAGGER_ASSETS = "/docs/assets/"


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
    api = Api(app)
    for module in (jobs, collectors, health, legacy):
        api.register_blueprint(module.blp)
    collectors.document_collectors(api, runtime(app).registry)
    init_requests(app)
    init_errors(app)

    @app.get(f"{SWAGGER_ASSETS}<path:filename>")
    def swagger_assets(filename: str) -> ResponseReturnValue:  # served locally: no CDN
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)

    return api


def _spec_options() -> dict[str, Any]:
    return {
        "info": {
            "description": (
                "Submit data-collection jobs (http, dns, tls, screenshot) and poll results."
            ),
        },
    }
