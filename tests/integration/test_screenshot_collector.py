"""The screenshot collector: real Debian Chromium against pages served on loopback.

Blocked connections are aimed at a canary on 127.0.0.2 / ::1 (loopback addresses
outside the allowlist), never at a non-loopback address.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from collectors.base import (
    BlockedAddress,
    CollectContext,
    CollectorUnavailable,
    NetworkPolicy,
    TargetTimeout,
    TransientResponse,
)
from collectors.screenshot import ScreenshotCollector, SelectorNotFound, png_size
from tests.canary import Canary

pytestmark = pytest.mark.collectors

CHROMIUM = os.environ.get("COLLECTQ_CHROMIUM_PATH", "/usr/bin/chromium")
ONLY_SITE = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.1/32"]))
LOOPBACK = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.0/8", "::1/128"]))
COLOUR = (0x33, 0x66, 0xCC)
PAGE = """<!doctype html><title>Known page</title>
<body style="margin:0;background:#3366cc"><script>console.error("boom")</script></body>"""

requires_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}"
)


def opts(**kw: object) -> dict:
    return ScreenshotCollector.options_schema().load(
        {"viewport": {"width": 400, "height": 300}, "timeout": 15, **kw}
    )


@pytest.fixture(scope="module")
def collector() -> Iterator[ScreenshotCollector]:
    c = ScreenshotCollector(chromium_path=CHROMIUM)
    yield c
    c.close()


def html(server: HTTPServer, path: str, body: str, status: int = 200) -> str:
    server.expect_request(path).respond_with_data(body, status, content_type="text/html")
    return server.url_for(path)


@requires_chromium
def test_shot_has_the_title_size_and_colour_of_the_page(collector, site) -> None:
    url = html(site, "/", PAGE)
    result = collector.collect(url, opts(), ONLY_SITE)
    data = result.data
    assert data["title"] == "Known page"
    assert (data["status_code"], data["final_url"]) == (200, url)
    assert (data["width"], data["height"]) == (400, 300)
    assert "boom" in data["console_errors"]
    assert data["blocked_requests"] == []
    assert ScreenshotCollector.result_schema().validate(data) == {}
    [artifact] = result.artifacts
    assert (artifact.name, artifact.content_type) == ("screenshot.png", "image/png")
    image = Image.open(io.BytesIO(artifact.body)).convert("RGB")
    assert image.size == (400, 300)
    assert image.getpixel((200, 150)) == COLOUR


@requires_chromium
def test_full_page_covers_the_whole_scroll_height(collector, site) -> None:
    url = html(site, "/", '<body style="margin:0"><div style="height:1500px"></div></body>')
    data = collector.collect(url, opts(full_page=True), ONLY_SITE).data
    assert (data["width"], data["height"]) == (400, 1500)


@requires_chromium
def test_redirects_are_followed_to_the_final_url(collector, site) -> None:
    final = html(site, "/final", PAGE)
    site.expect_request("/start").respond_with_data("", 302, headers={"Location": "/final"})
    data = collector.collect(site.url_for("/start"), opts(), ONLY_SITE).data
    assert (data["final_url"], data["title"]) == (final, "Known page")


@requires_chromium
def test_wait_for_selector_waits_for_late_content(collector, site) -> None:
    late = """<body><script>setTimeout(() => {
      const p = document.createElement("p"); p.id = "late"; p.textContent = "here";
      document.body.append(p); document.title = "ready"}, 300)</script></body>"""
    url = html(site, "/", late)
    data = collector.collect(url, opts(wait_for_selector="#late"), ONLY_SITE).data
    assert data["title"] == "ready"
    with pytest.raises(SelectorNotFound, match="#missing"):
        collector.collect(url, opts(wait_for_selector="#missing", timeout=2), ONLY_SITE)


@requires_chromium
def test_5xx_page_is_transient_with_the_shot_kept(collector, site) -> None:
    url = html(site, "/", PAGE, status=503)
    with pytest.raises(TransientResponse) as caught:
        collector.collect(url, opts(), ONLY_SITE)
    assert caught.value.result.data["status_code"] == 503
    assert caught.value.result.artifacts[0].name == "screenshot.png"


@requires_chromium
def test_slow_page_times_out(collector, site) -> None:
    def slow(_: Request) -> Response:
        time.sleep(4)
        return Response(PAGE, content_type="text/html")

    site.expect_request("/").respond_with_handler(slow)
    with pytest.raises(TargetTimeout):
        collector.collect(site.url_for("/"), opts(timeout=1.5), ONLY_SITE)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _chromium_pids() -> list[int]:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"chrom" in cmdline and b"--type=" not in cmdline:  # the browser, not its helpers
            pids.append(pid)
    return pids


@requires_chromium
def test_a_crashed_browser_is_relaunched(collector, site) -> None:
    url = html(site, "/", PAGE)
    collector.collect(url, opts(), ONLY_SITE)
    launches = collector.browsers.launches
    browsers = _chromium_pids()
    assert browsers, "the browser process was not found"
    for pid in browsers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    data = collector.collect(url, opts(), ONLY_SITE).data
    assert data["title"] == "Known page"
    assert collector.browsers.launches == launches + 1


def test_missing_chromium_makes_the_collector_unavailable() -> None:
    collector = ScreenshotCollector(chromium_path="/nonexistent/chromium")
    with pytest.raises(CollectorUnavailable, match="COLLECTQ_CHROMIUM_PATH"):
        collector.check_available()


def test_png_size_reads_the_header() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (17, 5)).save(buf, "PNG")
    assert png_size(buf.getvalue()) == (17, 5)
    with pytest.raises(ValueError, match="PNG"):
        png_size(b"GIF89a" + bytes(30))


# -- every connection of the page passes the guard -----------------------------------------

PROBE_PAGE = """<!doctype html><title>probe</title><body>
<img src="http://127.0.0.2:{port}/img.png">
<iframe src="http://[::1]:{port}/frame"></iframe>
<link rel="stylesheet" href="http://0x7f000002:{port}/style.css">
<script>
  fetch("http://127.0.0.2:{port}/fetch").catch(() => {{}});
  try {{ new WebSocket("ws://127.0.0.2:{port}/ws"); }} catch (e) {{}}
  navigator.sendBeacon("http://[::ffff:127.0.0.2]:{port}/beacon", "x");
</script></body>"""


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary("127.0.0.2", "::1") as c:
        yield c


@requires_chromium
def test_subresources_iframes_fetches_and_sockets_to_blocked_addresses_are_refused(
    collector, site, canary
) -> None:
    url = html(site, "/", PROBE_PAGE.format(port=canary.port))
    data = collector.collect(url, opts(wait_until="networkidle"), ONLY_SITE).data
    time.sleep(0.3)
    hosts = {r["host"] for r in data["blocked_requests"]}
    assert {"127.0.0.2", "::1"} <= hosts
    assert {r["error"]["type"] for r in data["blocked_requests"]} == {"blocked_address"}
    assert data["title"] == "probe"
    assert canary.hits == 0
    # Control: with all of loopback allowed, the same page does reach the canary.
    collector.collect(url, opts(wait_until="networkidle"), LOOPBACK)
    time.sleep(0.3)
    assert canary.hits > 0


@requires_chromium
def test_redirect_to_a_blocked_address_is_refused(collector, site, canary) -> None:
    site.expect_request("/").respond_with_data(
        "", 302, headers={"Location": f"http://127.0.0.2:{canary.port}/"}
    )
    with pytest.raises(BlockedAddress, match="127.0.0.2"):
        collector.collect(site.url_for("/"), opts(), ONLY_SITE)
    assert canary.hits == 0


def _socks_connect(relay_url: str, host: bytes, port: int) -> int:
    """Speak SOCKS5 to the relay by hand; return its reply code."""
    import socket

    _, _, hostport = relay_url.rpartition("/")
    relay_port = int(hostport.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", relay_port), timeout=5) as sock:
        sock.sendall(b"\x05\x01\x00")
        assert sock.recv(2) == b"\x05\x00"
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + port.to_bytes(2, "big"))
        return sock.recv(10)[1]


def test_the_relay_refuses_blocked_and_malformed_hosts_and_records_them(canary) -> None:
    from collectors.socksguard import SocksGuard

    with SocksGuard(ONLY_SITE.policy, connect_timeout=2) as relay:
        assert _socks_connect(relay.url, b"127.0.0.2", canary.port) == 2  # not allowed
        assert _socks_connect(relay.url, b"\xff\xfe.example", 80) == 2  # not a host name
        assert _socks_connect(relay.url, b"127.0.0.1", canary.port) == 4  # allowed; closed port
    assert [r.error.type for r in relay.refusals] == ["blocked_address", "invalid_target"]
    assert canary.hits == 0


# --- issue 11: Chromium runs untrusted pages with its sandbox ---

GOOD_PROD = {
    "COLLECTQ_ENV": "prod",
    "COLLECTQ_REDIS_URL": "redis://:a-long-redis-password@redis:6379/0",
    "COLLECTQ_BROKER_URL": "amqp://collectq:a-long-broker-password@rabbit:5672/collectq",
    "COLLECTQ_SECRET_KEY": "k" * 40,
}


def _as_uid(monkeypatch: pytest.MonkeyPatch, uid: int) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: uid)


def test_not_root_always_runs_the_sandbox(monkeypatch) -> None:
    _as_uid(monkeypatch, 10001)
    for allowed in (True, False):
        c = ScreenshotCollector(chromium_path=CHROMIUM, allow_no_sandbox=allowed)
        assert c.browsers.launch_options()["chromium_sandbox"] is True  # no --no-sandbox
        c.check_available()


def test_root_without_the_opt_in_is_unavailable_with_the_reason(monkeypatch) -> None:
    _as_uid(monkeypatch, 0)
    c = ScreenshotCollector(chromium_path=CHROMIUM, allow_no_sandbox=False)
    with pytest.raises(CollectorUnavailable) as info:
        c.check_available()
    assert "root" in info.value.detail
    assert "sandbox" in info.value.detail
    assert "COLLECTQ_CHROMIUM_NO_SANDBOX=true" in info.value.detail
    with pytest.raises(CollectorUnavailable):
        c.browsers.get()  # nor is a browser launched on a job


def test_root_with_the_opt_in_runs_without_the_sandbox(monkeypatch) -> None:
    _as_uid(monkeypatch, 0)
    c = ScreenshotCollector(chromium_path=CHROMIUM, allow_no_sandbox=True)
    c.check_available()
    assert c.browsers.launch_options()["chromium_sandbox"] is False


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"COLLECTQ_ENV": "test"}, None),
        ({"COLLECTQ_ENV": "dev"}, None),
        (GOOD_PROD, "COLLECTQ_CHROMIUM_NO_SANDBOX"),
        ({**GOOD_PROD, "COLLECTQ_ENV": "staging"}, "COLLECTQ_CHROMIUM_NO_SANDBOX"),
        ({**GOOD_PROD, "COLLECTQ_CHROMIUM_NO_SANDBOX": "true"}, None),
    ],
)
@requires_chromium
def test_the_profile_decides_whether_root_may_run_without_the_sandbox(
    monkeypatch, env: dict[str, str], reason: str | None
) -> None:
    from app.runtime import load_collectors
    from app.settings import load_settings

    _as_uid(monkeypatch, 0)
    monkeypatch.setenv("COLLECTQ_CHROMIUM_PATH", CHROMIUM)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    registry = load_collectors(load_settings())
    info = registry.info("screenshot")
    assert info is not None
    if reason is None:
        assert info.reason is None
    else:
        assert info.reason is not None
        assert reason in info.reason
    registry.close()
