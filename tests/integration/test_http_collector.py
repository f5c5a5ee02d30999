"""The http collector against local servers (loopback only)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from collectors.base import (
    BlockedAddress,
    CollectContext,
    InvalidTarget,
    NetworkPolicy,
    TargetConnectError,
    TargetTimeout,
    TransientResponse,
)
from collectors.http import HttpCollector
from tests.conftest import free_port

pytestmark = pytest.mark.integration

LOOPBACK = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.0/8", "::1/128"]))
ONLY_127_0_0_1 = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.1/32"]))
NOTHING = CollectContext(policy=NetworkPolicy())


@pytest.fixture
def collector() -> Iterator[HttpCollector]:
    c = HttpCollector()
    yield c
    c.close()


def _opts(**kw: object) -> dict:
    return HttpCollector.options_schema().load(kw)


@pytest.fixture
def canary() -> Iterator[HTTPServer]:
    """A server on 127.0.0.2 that must never be reached."""
    server = HTTPServer(host="127.0.0.2", port=free_port())
    server.expect_request("/").respond_with_data("canary")
    server.start()
    yield server
    server.clear()
    server.stop()


def test_get_returns_status_headers_body_and_hash(collector, httpserver) -> None:
    httpserver.expect_request("/p").respond_with_data(
        "hello world", content_type="text/plain", headers={"X-Test": "1"}
    )
    result = collector.collect(httpserver.url_for("/p"), _opts(), LOOPBACK)
    data = result.data
    assert data["status_code"] == 200
    assert data["headers"]["X-Test"] == "1"
    assert data["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert data["body_size"] == 11
    assert data["body_truncated"] is False
    assert data["final_url"] == httpserver.url_for("/p")
    assert data["timing"]["total_ms"] >= data["timing"]["ttfb_ms"] >= 0
    assert [(a.name, a.body) for a in result.artifacts] == [("http.body", b"hello world")]
    assert result.artifacts[0].content_type.startswith("text/plain")
    assert HttpCollector.result_schema().validate(data) == {}


def test_head_has_no_body_artifact(collector, httpserver) -> None:
    httpserver.expect_request("/h", method="HEAD").respond_with_data("")
    result = collector.collect(httpserver.url_for("/h"), _opts(method="HEAD"), LOOPBACK)
    assert result.data["status_code"] == 200
    assert result.artifacts == []


def test_custom_headers_are_sent(collector, httpserver) -> None:
    httpserver.expect_request("/h", headers={"X-Token": "abc"}).respond_with_data("ok")
    assert (
        collector.collect(
            httpserver.url_for("/h"), _opts(headers={"X-Token": "abc"}), LOOPBACK
        ).data["status_code"]
        == 200
    )


def test_404_is_data(collector, httpserver) -> None:
    httpserver.expect_request("/gone").respond_with_data("no", status=404)
    assert (
        collector.collect(httpserver.url_for("/gone"), _opts(), LOOPBACK).data["status_code"] == 404
    )


def test_503_is_transient_with_retry_after(collector, httpserver) -> None:
    httpserver.expect_request("/busy").respond_with_data(
        "busy", status=503, headers={"Retry-After": "7"}
    )
    with pytest.raises(TransientResponse) as info:
        collector.collect(httpserver.url_for("/busy"), _opts(), LOOPBACK)
    assert info.value.retry_after == 7
    assert info.value.result.data["status_code"] == 503


def test_redirects_are_followed_and_capped(collector, httpserver) -> None:
    for i in range(3):
        httpserver.expect_request(f"/r{i}").respond_with_data(
            "", status=302, headers={"Location": f"/r{i + 1}"}
        )
    httpserver.expect_request("/r3").respond_with_data("end")
    result = collector.collect(httpserver.url_for("/r0"), _opts(), LOOPBACK)
    assert result.data["final_url"] == httpserver.url_for("/r3")
    assert [r["status_code"] for r in result.data["redirects"]] == [302, 302, 302]
    with pytest.raises(InvalidTarget, match="more than 2 redirects"):
        collector.collect(httpserver.url_for("/r0"), _opts(max_redirects=2), LOOPBACK)
    not_followed = collector.collect(
        httpserver.url_for("/r0"), _opts(follow_redirects=False), LOOPBACK
    )
    assert not_followed.data["status_code"] == 302


def test_body_is_cut_at_max_body_bytes(collector, httpserver) -> None:
    httpserver.expect_request("/big").respond_with_data("x" * 100_000)
    result = collector.collect(httpserver.url_for("/big"), _opts(max_body_bytes=1000), LOOPBACK)
    assert result.data["body_truncated"] is True
    assert result.data["body_size"] == 1000
    assert len(result.artifacts[0].body) == 1000


def test_slow_target_times_out(collector, httpserver) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.5)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    with pytest.raises(TargetTimeout):
        collector.collect(httpserver.url_for("/slow"), _opts(timeout=0.3), LOOPBACK)


def test_closed_port_is_a_connect_error(collector) -> None:
    with pytest.raises(TargetConnectError):
        collector.collect(f"http://127.0.0.1:{free_port()}/", _opts(), LOOPBACK)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]"]
)
def test_loopback_is_blocked_without_allowlist(collector, canary, host) -> None:
    with pytest.raises(BlockedAddress):
        collector.collect(f"http://{host}:{canary.port}/", _opts(), NOTHING)
    assert canary.log == []


def test_redirect_to_a_blocked_address_is_refused(collector, httpserver, canary) -> None:
    httpserver.expect_request("/jump").respond_with_data(
        "", status=302, headers={"Location": f"http://127.0.0.2:{canary.port}/"}
    )
    with pytest.raises(BlockedAddress, match="127.0.0.2"):
        collector.collect(httpserver.url_for("/jump"), _opts(), ONLY_127_0_0_1)
    assert canary.log == []


def test_redirect_to_another_scheme_is_refused(collector, httpserver) -> None:
    httpserver.expect_request("/ftp").respond_with_data(
        "", status=301, headers={"Location": "file:///etc/passwd"}
    )
    with pytest.raises(InvalidTarget, match="scheme"):
        collector.collect(httpserver.url_for("/ftp"), _opts(), LOOPBACK)
