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


def test_job_request_document_says_what_the_server_accepts(make_app) -> None:
    """Constraints only the server knew are in the document (issue 11, item 4)."""
    client = make_app(
        COLLECTQ_PLUGINS="noop=benchmarks.noop:NoopCollector,ghost=nowhere.mod:Ghost"
    ).test_client()
    spec = client.get("/openapi.json").json
    request = spec["components"]["schemas"]["JobRequest"]
    props = request["properties"]
    available = sorted(
        c["name"] for c in client.get("/v1/collectors").json["items"] if c["available"]
    )
    assert "ghost" not in available
    assert props["collectors"]["items"]["enum"] == available
    assert props["collectors"]["uniqueItems"] is True
    assert props["options"]["additionalProperties"] is False
    assert set(props["options"]["properties"]) == set(available)
    assert props["labels"]["maxProperties"] == 32
    assert "maxLength" not in props["labels"]
    assert props["labels"]["propertyNames"]["pattern"]
    assert props["target"]["anyOf"]
    headers = spec["components"]["schemas"]["HttpOptions"]["properties"]["headers"]
    assert headers["maxProperties"] == 50
    assert "pattern" in headers["propertyNames"]
    # what a stateful client follows: a created job's id to its GET
    links = spec["paths"]["/v1/jobs"]["post"]["responses"]["202"]["links"]
    assert links["GetJob"]["parameters"] == {"job_id": "$response.body#/id"}


@pytest.mark.parametrize(
    "target", ["http://[x", "http://[::1", "https://a.org\n", "https://ü.example", "http://a.org:"]
)
def test_targets_outside_the_documented_forms_are_422(client, target: str) -> None:
    resp = client.post("/v1/jobs", json={"target": target, "collectors": ["noop"]})
    assert "target" in _problem(resp, 422)["errors"]


@pytest.mark.parametrize("key", ["a\n", "ok\n"])
def test_label_keys_match_whole(client, key: str) -> None:
    """The document's `^…$` patterns are ECMA's: no final newline slips through."""
    resp = client.post(
        "/v1/jobs", json={"target": "a.org", "collectors": ["noop"], "labels": {key: "v"}}
    )
    assert "labels" in _problem(resp, 422)["errors"]


def test_options_of_a_collector_the_job_does_not_run(client) -> None:
    """Checked like any (the document says so) and then dropped, not a 422 for being there."""
    job = {"target": "a.org", "collectors": ["noop"], "options": {"flaky": {"fail_times": 1}}}
    resp = client.post("/v1/jobs", json=job)
    assert resp.status_code == 202, resp.json
    job["options"] = {"flaky": {"bogus": 1}}
    errors = _problem(client.post("/v1/jobs", json=job), 422)["errors"]
    assert errors == {"options": {"flaky": {"bogus": ["Unknown field."]}}}
    job["options"] = {"nope": {}}
    assert "nope" in _problem(client.post("/v1/jobs", json=job), 422)["errors"]["options"]
