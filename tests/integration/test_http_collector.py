"""The http collector against local servers.

Every server here listens on loopback (127.0.0.1, 127.0.0.2, ::1). Blocking of
non-loopback addresses is proven on the pure decision function
(tests/unit/test_netguard.py), never by sending traffic. A "canary" is a server
that must see zero requests: it stands where a blocked connection would land.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from marshmallow import ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from collectors import netguard
from collectors.base import (
    BlockedAddress,
    CollectContext,
    InvalidTarget,
    NetworkPolicy,
    TargetConnectError,
    TargetTimeout,
    TransientResponse,
)
from collectors.http import HttpCollector, TlsError, TooManyRedirects, parse_retry_after
from tests.conftest import free_port

pytestmark = pytest.mark.collectors

LOOPBACK = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.0/8", "::1/128"]))
ONLY_127_0_0_1 = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.1/32"]))
NOTHING = CollectContext(policy=NetworkPolicy())


def opts(**kw: object) -> dict:
    return HttpCollector.options_schema().load(kw)


def serve(host: str, port: int = 0, **kw) -> HTTPServer:
    server = HTTPServer(host=host, port=port, **kw)
    server.start()
    return server


def stop(server: HTTPServer) -> None:
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def collector() -> Iterator[HttpCollector]:
    c = HttpCollector()
    yield c
    c.close()


@pytest.fixture
def canary() -> Iterator[HTTPServer]:
    """A server on 127.0.0.2 answering everything; tests assert whether it was reached."""
    server = serve("127.0.0.2")
    server.expect_request("/").respond_with_data("canary")
    yield server
    stop(server)


# -- the basics ----------------------------------------------------------------------------


def test_get_returns_status_headers_body_hash_and_artifact(collector, httpserver) -> None:
    httpserver.expect_request("/p").respond_with_data(
        "hello world", content_type="text/plain", headers={"X-Test": "1"}
    )
    result = collector.collect(httpserver.url_for("/p"), opts(), LOOPBACK)
    data = result.data
    assert data["status_code"] == 200
    assert data["reason"] == "OK"
    assert data["http_version"].startswith("HTTP/1.")
    assert data["headers"]["X-Test"] == "1"
    assert data["content_type"].startswith("text/plain")
    assert data["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert (data["body_size"], data["body_truncated"]) == (11, False)
    assert data["final_url"] == httpserver.url_for("/p")
    assert data["redirects"] == []
    timing = data["timing"]
    assert timing["total_ms"] >= timing["ttfb_ms"] >= timing["connect_ms"] > 0
    [artifact] = result.artifacts
    assert (artifact.name, artifact.body) == ("http.body", b"hello world")
    assert artifact.content_type.startswith("text/plain")
    assert HttpCollector.result_schema().validate(data) == {}


def test_head_sends_head_and_keeps_no_body(collector, httpserver) -> None:
    httpserver.expect_request("/h", method="HEAD").respond_with_data("", content_type="text/html")
    result = collector.collect(httpserver.url_for("/h"), opts(method="HEAD"), LOOPBACK)
    assert result.data["status_code"] == 200
    assert result.data["body_sha256"] is None
    assert result.artifacts == []
    assert [r.method for r, _ in httpserver.log] == ["HEAD"]
    assert HttpCollector.result_schema().validate(result.data) == {}


def test_empty_body_has_no_artifact(collector, httpserver) -> None:
    httpserver.expect_request("/e").respond_with_data("", status=204)
    result = collector.collect(httpserver.url_for("/e"), opts(), LOOPBACK)
    assert (result.data["status_code"], result.artifacts) == (204, [])
    assert result.data["body_sha256"] == hashlib.sha256(b"").hexdigest()


def test_custom_headers_are_sent_and_replace_defaults(collector, httpserver) -> None:
    httpserver.expect_request("/h").respond_with_data("ok")
    collector.collect(
        httpserver.url_for("/h"), opts(headers={"X-Token": "abc", "user-agent": "me"}), LOOPBACK
    )
    [(request, _)] = httpserver.log
    assert request.headers["X-Token"] == "abc"
    assert request.headers.getlist("User-Agent") == ["me"]
    assert request.headers["Host"] == f"localhost:{httpserver.port}"


def test_404_is_data(collector, httpserver) -> None:
    httpserver.expect_request("/gone").respond_with_data("no such page", status=404)
    result = collector.collect(httpserver.url_for("/gone"), opts(), LOOPBACK)
    assert result.data["status_code"] == 404
    assert result.artifacts[0].body == b"no such page"


@pytest.mark.parametrize(("status", "retry_after"), [(503, "7"), (429, "120"), (500, None)])
def test_429_and_5xx_are_transient_with_retry_after(
    collector, httpserver, status, retry_after
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    httpserver.expect_request("/busy").respond_with_data("busy", status=status, headers=headers)
    with pytest.raises(TransientResponse) as info:
        collector.collect(httpserver.url_for("/busy"), opts(), LOOPBACK)
    assert info.value.retryable
    assert info.value.retry_after == (float(retry_after) if retry_after else None)
    assert info.value.result.data["status_code"] == status
    assert info.value.result.artifacts[0].body == b"busy"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:20 GMT", now) == 60.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # in the past
    for bad in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(bad, now) is None


# -- redirects -----------------------------------------------------------------------------


def _chain(server: HTTPServer, hops: int, status: int = 302) -> None:
    for i in range(hops):
        server.expect_request(f"/r{i}").respond_with_data(
            "", status=status, headers={"Location": f"/r{i + 1}"}
        )
    server.expect_request(f"/r{hops}").respond_with_data("end")


def test_redirects_are_followed_and_recorded(collector, httpserver) -> None:
    _chain(httpserver, 3)
    result = collector.collect(httpserver.url_for("/r0"), opts(), LOOPBACK)
    assert result.data["status_code"] == 200
    assert result.data["final_url"] == httpserver.url_for("/r3")
    assert result.data["redirects"] == [
        {"status_code": 302, "url": httpserver.url_for(f"/r{i}")} for i in range(3)
    ]
    assert result.artifacts[0].body == b"end"


def test_redirects_beyond_max_redirects_are_an_error(collector, httpserver) -> None:
    _chain(httpserver, 3)
    collector.collect(httpserver.url_for("/r0"), opts(max_redirects=3), LOOPBACK)  # at the cap
    with pytest.raises(TooManyRedirects, match="more than 2 redirects") as info:
        collector.collect(httpserver.url_for("/r0"), opts(max_redirects=2), LOOPBACK)
    assert info.value.to_dict()["type"] == "too_many_redirects"
    assert isinstance(info.value, InvalidTarget)


def test_redirect_loop_ends_at_the_cap(collector, httpserver) -> None:
    httpserver.expect_request("/loop").respond_with_data(
        "", status=307, headers={"Location": "/loop"}
    )
    with pytest.raises(TooManyRedirects):
        collector.collect(httpserver.url_for("/loop"), opts(max_redirects=20), LOOPBACK)
    assert len(httpserver.log) == 21


def test_redirects_are_not_followed_when_turned_off(collector, httpserver) -> None:
    _chain(httpserver, 1, status=301)
    result = collector.collect(httpserver.url_for("/r0"), opts(follow_redirects=False), LOOPBACK)
    assert result.data["status_code"] == 301
    assert result.data["headers"]["Location"] == "/r1"
    assert len(httpserver.log) == 1


def test_redirect_to_another_scheme_is_refused(collector, httpserver) -> None:
    httpserver.expect_request("/away").respond_with_data(
        "", status=301, headers={"Location": "file:///etc/passwd"}
    )
    with pytest.raises(InvalidTarget, match="redirect from .*scheme 'file'"):
        collector.collect(httpserver.url_for("/away"), opts(), LOOPBACK)


def test_redirect_to_another_origin_drops_credentials(collector, httpserver, canary) -> None:
    httpserver.expect_request("/same").respond_with_data("", status=302, headers={"Location": "/x"})
    httpserver.expect_request("/x").respond_with_data(
        "", status=302, headers={"Location": canary.url_for("/")}
    )
    headers = {"Authorization": "Bearer s3cret", "Cookie": "a=b", "X-Keep": "1"}
    result = collector.collect(httpserver.url_for("/same"), opts(headers=headers), LOOPBACK)
    assert result.data["final_url"] == canary.url_for("/")
    assert [r.headers.get("Authorization") for r, _ in httpserver.log] == ["Bearer s3cret"] * 2
    [(request, _)] = canary.log
    assert "Authorization" not in request.headers
    assert "Cookie" not in request.headers
    assert request.headers["X-Keep"] == "1"


# -- body limits and timeouts --------------------------------------------------------------


def test_body_is_cut_at_max_body_bytes(collector, httpserver) -> None:
    httpserver.expect_request("/big").respond_with_data("x" * 100_000)
    result = collector.collect(httpserver.url_for("/big"), opts(max_body_bytes=1000), LOOPBACK)
    assert (result.data["body_size"], result.data["body_truncated"]) == (1000, True)
    assert result.data["body_sha256"] == hashlib.sha256(b"x" * 1000).hexdigest()
    assert result.artifacts[0].body == b"x" * 1000


def test_body_of_exactly_max_body_bytes_is_not_truncated(collector, httpserver) -> None:
    httpserver.expect_request("/fit").respond_with_data("y" * 1000)
    result = collector.collect(httpserver.url_for("/fit"), opts(max_body_bytes=1000), LOOPBACK)
    assert (result.data["body_size"], result.data["body_truncated"]) == (1000, False)


def test_streamed_body_without_length_is_cut_too(collector, httpserver) -> None:
    def stream(request: Request) -> Response:
        return Response((b"z" * 4096 for _ in range(100)), content_type="application/x-test")

    httpserver.expect_request("/stream").respond_with_handler(stream)
    result = collector.collect(httpserver.url_for("/stream"), opts(max_body_bytes=10_000), LOOPBACK)
    assert (result.data["body_size"], result.data["body_truncated"]) == (10_000, True)
    assert result.artifacts[0].content_type == "application/x-test"


def test_slow_answer_times_out(collector, httpserver) -> None:
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(5)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    started = time.monotonic()
    with pytest.raises(TargetTimeout):
        collector.collect(httpserver.url_for("/slow"), opts(timeout=0.3), LOOPBACK)
    release.set()
    assert time.monotonic() - started < 2


def test_trickling_body_cannot_outlast_the_timeout(collector, httpserver) -> None:
    release = threading.Event()

    def trickle(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(50):  # one byte every 0.1 s: each read is quick, the whole is not
                yield b"."
                if release.wait(0.1):
                    return

        return Response(body())

    httpserver.expect_request("/trickle").respond_with_handler(trickle)
    started = time.monotonic()
    with pytest.raises(TargetTimeout):
        collector.collect(httpserver.url_for("/trickle"), opts(timeout=0.5), LOOPBACK)
    release.set()
    assert time.monotonic() - started < 2


def test_closed_port_is_a_connect_error(collector) -> None:
    with pytest.raises(TargetConnectError) as info:
        collector.collect(f"http://127.0.0.1:{free_port()}/", opts(), LOOPBACK)
    assert info.value.retryable


# -- pooling -------------------------------------------------------------------------------


class _KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # werkzeug's dev server always closes; this one keeps alive

    def do_GET(self) -> None:
        self.server.client_ports.append(self.client_address[1])  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keepalive_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    server.client_ports = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_connections_are_pooled_until_close(collector, keepalive_server) -> None:
    url = f"http://127.0.0.1:{keepalive_server.server_address[1]}/k"
    first = collector.collect(url, opts(), LOOPBACK)
    second = collector.collect(url, opts(), LOOPBACK)
    collector.close()
    third = collector.collect(url, opts(), LOOPBACK)
    collector.close()  # before the server stops: its handler threads wait on our sockets
    ports = keepalive_server.client_ports
    assert len(ports) == 3
    assert ports[0] == ports[1] != ports[2]
    assert first.data["timing"]["connect_ms"] > 0
    assert second.data["timing"]["connect_ms"] == 0
    assert third.data["timing"]["connect_ms"] > 0


# -- the network guard ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "localhost"),
        ("127.0.0.1", "2130706433"),
        ("127.0.0.1", "0x7f000001"),
        ("127.0.0.1", "0177.0.0.1"),
        ("127.0.0.1", "[::ffff:127.0.0.1]"),
        ("::1", "[::1]"),
    ],
)
def test_loopback_is_blocked_without_allowlist(collector, listen, host) -> None:
    try:
        server = serve(listen)
    except OSError:
        pytest.skip(f"cannot listen on {listen}")
    try:
        server.expect_request("/").respond_with_data("canary")
        with pytest.raises(BlockedAddress, match="loopback"):
            collector.collect(f"http://{host}:{server.port}/", opts(), NOTHING)
        assert server.log == []
        # The same URL with loopback allowed does reach it: the canary is really there.
        collector.collect(f"http://{host}:{server.port}/", opts(), LOOPBACK)
        assert len(server.log) == 1
    finally:
        stop(server)


def test_redirect_to_a_blocked_address_is_refused(collector, canary) -> None:
    origin = serve("127.0.0.1")
    try:
        origin.expect_request("/jump").respond_with_data(
            "", status=302, headers={"Location": canary.url_for("/")}
        )
        with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2 is loopback"):
            collector.collect(origin.url_for("/jump"), opts(), ONLY_127_0_0_1)
        assert len(origin.log) == 1
        assert canary.log == []
    finally:
        stop(origin)


def test_dns_rebinding_cannot_switch_the_address(collector, monkeypatch) -> None:
    """A name answering 127.0.0.1 (allowed), then 127.0.0.2 (blocked), on the same port.

    If anything resolved the name a second time after the check, the request
    would land on the canary at 127.0.0.2.
    """
    canary = serve("127.0.0.2")
    try:
        server = serve("127.0.0.1", port=canary.port)
    except OSError:
        stop(canary)
        pytest.skip("port taken on 127.0.0.1")
    calls: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        calls.append(host)
        address = "127.0.0.1" if len(calls) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        for s in (server, canary):
            s.expect_request("/").respond_with_data("hi")
        result = collector.collect(f"http://rebind.test:{server.port}/", opts(), ONLY_127_0_0_1)
        assert result.data["status_code"] == 200
        assert len(server.log) == 1
        assert canary.log == []
        assert calls == ["rebind.test"]
        # The next (new) connection resolves again, gets 127.0.0.2 and is refused.
        collector.close()
        with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2"):
            collector.collect(f"http://rebind.test:{server.port}/", opts(), ONLY_127_0_0_1)
        assert canary.log == []
    finally:
        stop(server)
        stop(canary)


def test_guarded_connection_connects_to_the_checked_address(monkeypatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        monkeypatch.setattr(
            socket,
            "getaddrinfo",
            lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))],
        )
        with netguard.guarded_connection("pinned.test", port, LOOPBACK.policy, 2) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
        with pytest.raises(BlockedAddress):
            netguard.guarded_connection("pinned.test", port, NOTHING.policy, 2)
        listener.setblocking(False)
        listener.accept()[0].close()  # the first connection
        with pytest.raises(BlockingIOError):  # and no second one: the refusal came first
            listener.accept()


@pytest.mark.parametrize(
    "target",
    ["ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "http://127.0.0.1:0/", "gopher://x/"],
)
def test_unusable_targets_are_invalid(collector, target) -> None:
    with pytest.raises(InvalidTarget):
        collector.collect(target, opts(), LOOPBACK)


# -- https: pinned address, original name for SNI and verification -------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_server(ca: trustme.CA, name: str, sni: list[str | None]) -> HTTPServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    context.sni_callback = lambda _sock, server_name, _ctx: sni.append(server_name)
    server = serve("127.0.0.1", ssl_context=context)
    server.expect_request("/").respond_with_data("secure")
    return server


@pytest.fixture
def tls_collector(ca, tmp_path) -> Iterator[HttpCollector]:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    c = HttpCollector(ca_certs=str(tmp_path / "ca.pem"))
    yield c
    c.close()


def test_https_verifies_the_name_and_sends_it_as_sni(tls_collector, ca) -> None:
    sni: list[str | None] = []
    server = _tls_server(ca, "localhost", sni)
    try:
        # A bare host:port target means https.
        result = tls_collector.collect(f"localhost:{server.port}", opts(), LOOPBACK)
    finally:
        stop(server)
    assert result.data["final_url"] == f"https://localhost:{server.port}/"
    assert result.artifacts[0].body == b"secure"
    assert sni == ["localhost"]


def test_https_with_a_certificate_for_another_name_fails(tls_collector, ca) -> None:
    sni: list[str | None] = []
    server = _tls_server(ca, "elsewhere.test", sni)
    try:
        with pytest.raises(TlsError, match="localhost") as info:
            tls_collector.collect(f"https://localhost:{server.port}/", opts(), LOOPBACK)
    finally:
        stop(server)
    assert not info.value.retryable
    assert server.log == []


def test_https_without_a_trusted_ca_fails(collector, ca) -> None:
    sni: list[str | None] = []
    server = _tls_server(ca, "localhost", sni)
    try:
        with pytest.raises(TlsError, match="certificate verify failed"):
            collector.collect(f"https://localhost:{server.port}/", opts(), LOOPBACK)
    finally:
        stop(server)


# -- options -------------------------------------------------------------------------------


def test_options_have_bounded_defaults() -> None:
    assert opts() == {
        "method": "GET",
        "headers": {},
        "timeout": 10.0,
        "follow_redirects": True,
        "max_redirects": 5,
        "max_body_bytes": 5 * 1024 * 1024,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "POST"},
        {"timeout": 0.05},
        {"timeout": 56},
        {"max_redirects": 21},
        {"max_redirects": -1},
        {"max_body_bytes": 0},
        {"max_body_bytes": 50 * 1024 * 1024 + 1},
        {"headers": {"Host": "internal"}},
        {"headers": {"transfer-encoding": "chunked"}},
        {"headers": {"Connection": "close"}},
        {"headers": {"Content-Length": "5"}},
        {"headers": {"X-A": "1", "x-a": "2"}},
        {"headers": {"X-Bad": "a\r\nInjected: 1"}},
        {"headers": {"X-Bad": "snow\u2603man"}},
        {"headers": {"Bad Name": "1"}},
        {"headers": {"X" * 257: "1"}},
        {"headers": {"X-Long": "v" * 8193}},
        {"headers": {f"X-{i}": "1" for i in range(51)}},
        {"surprise": True},
    ],
)
def test_options_out_of_bounds_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        opts(**bad)


def test_options_at_the_bounds_are_accepted() -> None:
    loaded = opts(
        method="HEAD",
        timeout=55,
        max_redirects=20,
        max_body_bytes=50 * 1024 * 1024,
        headers={**{f"X-{i}": "1" for i in range(49)}, "X" * 256: "v" * 8192},
    )
    assert len(loaded["headers"]) == 50
