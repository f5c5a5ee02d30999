"""Per-collector policies (issue 17): what `GET /v1/collectors` and the OpenAPI document
show, a job narrowing its retries (and refused beyond the policy), and the narrowing
obeyed by a real worker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.integration

BUILT_IN = ("http", "dns", "tls", "screenshot")
# the plugin collectors use the global settings, explicit here for a fast backoff
FAST = {"COLLECTQ_RETRY_BACKOFF_BASE": "0.05", "COLLECTQ_RETRY_BACKOFF_MAX": "0.2"}


def _policies(client: Any) -> dict[str, dict[str, Any]]:
    items = client.get("/v1/collectors").json["items"]
    return {c["name"]: c for c in items}


def test_the_effective_policies_are_shown_and_documented(
    make_app, service_env: dict[str, str]
) -> None:
    app = make_app(COLLECTQ_POLICY_HTTP="retries=2,host_concurrency=8")
    client = app.test_client()
    collectors = _policies(client)
    print("\n" + json.dumps({n: collectors[n]["policy"] for n in BUILT_IN}, indent=1))
    http = collectors["http"]["policy"]
    assert (http["retries"], http["host_concurrency"]) == (2, 8)  # COLLECTQ_POLICY_HTTP
    assert (http["breaker_fail_max"], http["breaker_reset_timeout"]) == (5, 30.0)  # built in
    # the test deployment sets RETRY_BACKOFF_* explicitly: every collector follows them
    assert (http["backoff_base"], http["backoff_max"]) == (
        float(service_env["COLLECTQ_RETRY_BACKOFF_BASE"]),
        float(service_env["COLLECTQ_RETRY_BACKOFF_MAX"]),
    )
    assert collectors["dns"]["policy"]["retries"] == 5
    assert collectors["dns"]["policy"]["breaker_fail_max"] == 10
    assert collectors["tls"]["policy"]["host_concurrency"] == 4
    assert collectors["screenshot"]["policy"]["retries"] == 1
    assert collectors["screenshot"]["policy"]["breaker_fail_max"] == 3
    for name in BUILT_IN:
        retries = collectors[name]["options_schema"]["properties"]["retries"]
        assert retries["maximum"] == collectors[name]["policy"]["retries"], name
    doc = client.get("/openapi.json").json["components"]["schemas"]
    assert doc["HttpOptions"]["properties"]["retries"]["maximum"] == 2
    assert doc["ScreenshotOptions"]["properties"]["retries"]["maximum"] == 1
    assert "policy" in doc["CollectorInfo"]["properties"]


@pytest.mark.parametrize(
    ("collector", "retries", "problem"),
    [
        ("http", 4, "at most 3"),
        ("dns", 6, "at most 5"),
        ("http", -1, "at least 0"),
        ("http", True, "at least 0"),
        ("http", "2", "at least 0"),
        ("http", 1.5, "at least 0"),
        ("http", 4.0, "at most 3"),  # a whole number in JSON is an integer, and too many
    ],
)
def test_a_job_cannot_widen_its_policy(
    make_app, collector: str, retries: Any, problem: str
) -> None:
    client = make_app().test_client()
    body = {"target": "127.0.0.1", "collectors": [collector]}
    resp = client.post("/v1/jobs", json={**body, "options": {collector: {"retries": retries}}})
    assert resp.status_code == 422, resp.json
    assert resp.mimetype == "application/problem+json"
    message = resp.json["errors"]["options"][collector]["retries"][0]
    assert problem in message
    if problem.startswith("at most"):
        print(f"\n{collector} retries={retries}: 422 options.{collector}.retries: {message}")


def test_a_job_narrows_its_retries_and_the_worker_obeys(make_app, start_worker) -> None:
    start_worker(queues="collect.flaky", **FAST)
    client = make_app(**FAST).test_client()
    assert _policies(client)["flaky"]["policy"]["retries"] == 3  # a plugin: the globals

    def run(options: dict[str, Any]) -> dict[str, Any]:
        body = {"target": "127.0.0.1", "collectors": ["flaky"], "options": {"flaky": options}}
        resp = client.post("/v1/jobs", json={**body, "fresh": True})
        assert resp.status_code == 202, resp.json
        url = resp.headers["Location"]
        done: dict[str, Any] = wait_for(
            lambda: (j := client.get(url).json)["status"] in ("succeeded", "failed") and j,
            timeout=30,
        )
        return done

    default = run({"fail_times": 2})
    narrowed = run({"fail_times": 2, "retries": 1})
    none = run({"fail_times": 2, "retries": 0})
    print(
        "\nflaky fail_times=2: "
        f"policy retries 3 -> {default['status']} after {default['results']['flaky']['attempts']}; "
        f"retries 1 -> {narrowed['status']} after {narrowed['results']['flaky']['attempts']}; "
        f"retries 0 -> {none['status']} after {none['results']['flaky']['attempts']}"
    )
    assert (default["status"], default["results"]["flaky"]["attempts"]) == ("succeeded", 3)
    assert (narrowed["status"], narrowed["results"]["flaky"]["attempts"]) == ("failed", 2)
    assert (none["status"], none["results"]["flaky"]["attempts"]) == ("failed", 1)


def test_a_bad_policy_variable_is_named(make_app) -> None:
    from app.settings import ConfigError, load_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLLECTQ_POLICY_DNS", "retries=99,backoff_base=2,backoff_max=1,speed=3")
        with pytest.raises(ConfigError) as caught:
            load_settings()
    problems = caught.value.errors["COLLECTQ_POLICY_DNS"]
    assert any("retries must be at most 20" in p for p in problems)
    assert any("backoff_max must be at least backoff_base" in p for p in problems)
    assert any("'speed=3'" in p for p in problems)
