"""One job, four collectors, four queues, four real worker processes (one per collector).

The target is a page on loopback; dns asks a local dnslib server, tls shakes hands
with a local trustme server, screenshot drives Debian's Chromium.
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

import pytest
from PIL import Image
from werkzeug import Request, Response

from tests.tlsserver import certificates, tls_server

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("COLLECTQ_CHROMIUM_PATH", "/usr/bin/chromium")
CA, CERTS = certificates()
PAGE = '<!doctype html><title>Fan-out</title><body style="background:#10a050"></body>'


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}")
def test_one_job_fans_out_to_all_four_collectors(
    make_app, start_worker, httpserver, dns_port
) -> None:
    httpserver.expect_request("/").respond_with_data(PAGE, content_type="text/html")
    io_workers = [start_worker(q) for q in ("collect.http", "collect.dns", "collect.tls")]
    shot_worker = start_worker("collect.screenshot", concurrency=1)
    # Each worker runs its collector's pool (COLLECTQ_POOL_<NAME> defaults).
    for w in io_workers:
        assert "concurrency: 4 (thread)" in w.log_path.read_text()
    assert "concurrency: 1 (prefork)" in shot_worker.log_path.read_text()
    client = make_app().test_client()
    with tls_server(CERTS["valid"]) as tls:
        body: dict[str, Any] = {
            "target": f"http://localhost:{httpserver.port}/",
            "collectors": ["http", "dns", "tls", "screenshot"],
            "options": {
                "dns": {"nameserver": "127.0.0.1", "port": dns_port, "types": ["A"]},
                "tls": {"port": tls.port, "ca_pem": CA.cert_pem.bytes().decode()},
                "screenshot": {"viewport": {"width": 320, "height": 240}},
            },
        }
        resp = client.post("/v1/jobs", json=body)
        assert resp.status_code == 202, resp.json
        env = client.get(f"{resp.headers['Location']}?wait=60").json

    assert env["status"] == "succeeded", env
    results = env["results"]
    assert set(results) == {"http", "dns", "tls", "screenshot"}
    assert results["http"]["data"]["status_code"] == 200
    assert results["dns"]["data"]["nxdomain"] is True  # localhost. is not in the test zone
    assert results["tls"]["data"]["verification"]["verified"] is True
    shot = results["screenshot"]["data"]
    assert (shot["title"], shot["width"], shot["height"]) == ("Fan-out", 320, 240)
    [art] = results["screenshot"]["artifacts"]
    assert art["url"] == f"/v1/jobs/{env['id']}/artifacts/screenshot.png"  # rendered by the API
    png = client.get(art["url"])
    assert png.status_code == 200
    assert png.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png.data)).convert("RGB").getpixel((160, 120)) == (16, 160, 80)


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}")
def test_screenshot_over_its_soft_limit_fails_and_the_next_job_works(
    make_app, start_worker, site
) -> None:
    def hang(_: Request) -> Response:
        time.sleep(6)
        return Response(PAGE, content_type="text/html")

    site.expect_request("/hang").respond_with_handler(hang)
    site.expect_request("/").respond_with_data(PAGE, content_type="text/html")
    limits = {"COLLECTQ_POOL_SCREENSHOT": "soft_time_limit=2,hard_time_limit=10"}
    start_worker("collect.screenshot", concurrency=1, **limits)
    client = make_app(**limits).test_client()

    def run(path: str) -> dict[str, Any]:
        resp = client.post(
            "/v1/jobs",
            json={"target": site.url_for(path), "collectors": ["screenshot"],
                  "options": {"screenshot": {"timeout": 30}}},
        )  # fmt: skip
        assert resp.status_code == 202, resp.json
        return client.get(f"{resp.headers['Location']}?wait=30").json

    hung = run("/hang")
    assert hung["status"] == "failed", hung
    assert hung["results"]["screenshot"]["error"]["type"] == "time_limit"
    after = run("/")
    assert after["status"] == "succeeded", after["results"]["screenshot"]["error"]
    assert after["results"]["screenshot"]["data"]["title"] == "Fan-out"
