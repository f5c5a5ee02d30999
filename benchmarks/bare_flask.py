"""The baseline for the submit bench: a bare Flask JSON endpoint, nothing behind it."""

from __future__ import annotations

from typing import Any

from flask import Flask, request


def create() -> Flask:
    app = Flask("bare")

    @app.post("/v1/jobs")
    def submit() -> Any:
        body = request.get_json()
        return {"id": "j_bare", "status": "queued", "target": body["target"]}, 202

    return app


application = create()
