"""The HTTP contract: problem+json errors, OpenAPI document, local Swagger UI."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

pytestmark = pytest.mark.integration


@pytest.fixture
def client(make_app):
    return make_app(COLLECTQ_MAX_BODY_BYTES="2048").test_client()


def _problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.data
    assert resp.mimetype == "application/problem+json"
    body = resp.json
    assert body["status"] == status
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert {"type", "title", "detail", "instance"} <= set(body)
    return body


def test_malformed_json_is_400(client) -> None:
    _problem(client.post("/v1/jobs", data="{nope", content_type="application/json"), 400)


def test_body_over_limit_is_413(client) -> None:
    big = {"target": "example.org", "collectors": ["noop"], "labels": {"k": "x" * 4000}}
    _problem(client.post("/v1/jobs", json=big), 413)


def test_wrong_content_type_is_415(client) -> None:
    _problem(
        client.post("/v1/jobs", data="target=x", content_type="application/x-www-form-urlencoded"),
        415,
    )


def test_schema_errors_are_422_per_field(client) -> None:
    body = _problem(
        client.post("/v1/jobs", json={"target": "gopher://x", "collectors": ["Bad!"], "zzz": 1}),
        422,
    )
    assert set(body["errors"]) == {"target", "collectors", "zzz"}
    body = _problem(client.post("/v1/jobs", json={"target": "a.org", "collectors": ["nope"]}), 422)
    assert "unknown collector 'nope'" in body["errors"]["collectors"]["0"][0]


def test_bad_collector_options_are_422_naming_the_field(client) -> None:
    body = _problem(
        client.post(
            "/v1/jobs",
            json={
                "target": "example.org",
                "collectors": ["flaky"],
                "options": {"flaky": {"bogus": 1}},
            },
        ),
        422,
    )
    assert body["errors"] == {"options": {"flaky": {"bogus": ["Unknown field."]}}}


def test_unknown_route_and_method(client) -> None:
    _problem(client.get("/v1/nothing"), 404)
    _problem(client.get("/v1/jobs/not-an-id"), 404)
    resp = client.patch("/v1/jobs", json={})
    _problem(resp, 405)
    assert "POST" in resp.headers["Allow"]


def test_request_id_is_echoed(client) -> None:
    resp = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    assert resp.json == {"status": "ok"}


def test_openapi_document_is_valid_and_complete(client) -> None:
    spec = client.get("/openapi.json").json
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/artifacts/{name}",
        "/v1/collectors",
        "/health",
        "/ready",
        "/v1/status",
        "/collect",
    ):
        assert path in spec["paths"], path
    assert "202" in spec["paths"]["/v1/jobs"]["post"]["responses"]
    assert spec["paths"]["/collect"]["post"]["deprecated"] is True


def test_swagger_ui_is_served_from_local_assets(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.data.decode()
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "//cdn" not in html
    assert "unpkg" not in html
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.data) > 100_000
    asset.close()


def test_collectors_list_schemas_and_unavailable_plugins(make_app) -> None:
    client = make_app(
        COLLECTQ_PLUGINS="noop=benchmarks.noop:NoopCollector,ghost=nowhere.mod:Ghost"
    ).test_client()
    items = {c["name"]: c for c in client.get("/v1/collectors").json["items"]}
    assert items["noop"]["available"] is True
    assert items["noop"]["queue"] == "collect.noop"
    assert items["noop"]["options_schema"]["type"] == "object"
    assert items["ghost"]["available"] is False
    assert "nowhere" in items["ghost"]["reason"]
    body = _problem(client.post("/v1/jobs", json={"target": "a.org", "collectors": ["ghost"]}), 422)
    assert "unavailable" in body["errors"]["collectors"]["0"][0]


def test_collector_schemas_are_in_the_openapi_document(client) -> None:
    spec = client.get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    for name in ("Http", "Dns", "Tls", "Screenshot"):
        assert f"{name}Options" in schemas
        assert f"{name}Result" in schemas
    options = schemas["JobRequest"]["properties"]["options"]["properties"]
    assert options["screenshot"] == {"$ref": "#/components/schemas/ScreenshotOptions"}
    assert schemas["ScreenshotOptions"]["properties"]["wait_until"]["enum"] == [
        "load", "domcontentloaded", "networkidle", "commit",
    ]  # fmt: skip


def test_screenshot_without_chromium_is_unavailable_and_jobs_get_422(make_app) -> None:
    client = make_app(COLLECTQ_CHROMIUM_PATH="/nonexistent/chromium").test_client()
    shot = {c["name"]: c for c in client.get("/v1/collectors").json["items"]}["screenshot"]
    assert shot["available"] is False
    assert "/nonexistent/chromium" in shot["reason"]
    assert shot["options_schema"]["properties"]["full_page"]["type"] == "boolean"
    body = _problem(
        client.post("/v1/jobs", json={"target": "a.org", "collectors": ["http", "screenshot"]}),
        422,
    )
    assert "/nonexistent/chromium" in body["errors"]["collectors"]["1"][0]


def test_unknown_screenshot_option_is_422_naming_it(client) -> None:
    resp = client.post(
        "/v1/jobs",
        json={
            "target": "a.org",
            "collectors": ["screenshot"],
            "options": {"screenshot": {"viewport": {"width": 50}, "zoom": 2}},
        },
    )
    errors = _problem(resp, 422)["errors"]["options"]["screenshot"]
    assert "zoom" in errors
    assert "width" in errors["viewport"]
