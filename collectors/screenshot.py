"""The screenshot collector: load a page in headless Chromium and keep a PNG of it.

Each job gets a fresh browser context (no cookies, cache or storage from other
jobs) whose every connection goes through a :class:`SocksGuard` relay, so the
page, its redirects, subresources, iframes, fetches and WebSockets all pass the
same network guard as the other collectors. The browser itself lives per worker
thread (:class:`collectors.browser.Browsers`).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import time
from collections.abc import Mapping
from typing import Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page, Response
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from collectors import fingerprint as fp
from collectors import netguard
from collectors.base import (
    Artifact,
    BlockedAddress,
    CollectContext,
    Collector,
    CollectorError,
    Result,
    TargetConnectError,
    TargetTimeout,
    TlsError,
    TransientResponse,
)
from collectors.browser import Browsers
from collectors.socksguard import SocksGuard
from schemas.screenshot import ScreenshotOptionsSchema, ScreenshotResultSchema

__all__ = ["ScreenshotCollector", "SelectorNotFound", "png_size"]

MAX_CONSOLE_ERRORS = 50
MAX_MESSAGE_CHARS = 500


class SelectorNotFound(CollectorError):
    """`wait_for_selector` never became visible: a property of the page, not retried."""

    type = "selector_not_found"


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class ScreenshotCollector(Collector):
    """Screenshot one page. One instance per worker process; browsers live per thread."""

    name = "screenshot"
    options_schema = ScreenshotOptionsSchema
    result_schema = ScreenshotResultSchema

    def __init__(
        self, *, chromium_path: str = "/usr/bin/chromium", allow_no_sandbox: bool = True
    ) -> None:
        # allow_no_sandbox: only as root (collectors.browser); the wiring decides it per profile
        self.browsers = Browsers(chromium_path, allow_no_sandbox=allow_no_sandbox)

    def check_available(self) -> None:
        self.browsers.check()

    def warm(self) -> None:
        """Launch this process's browser now (called after the worker forked)."""
        self.browsers.get()

    def close(self) -> None:
        self.browsers.close()

    def fingerprint(
        self, data: Mapping[str, Any], options: fp.FingerprintOptions, artifact: fp.ArtifactReader
    ) -> fp.Fingerprint:
        """The PNG's sha256; with `screenshot_hash: perceptual` (and Pillow installed) a
        difference hash of the image and its size instead."""
        if options.screenshot_hash == "perceptual" and fp.perceptual_available():
            png = artifact("screenshot.png")
            try:
                phash = fp.dhash(png) if png is not None else None
            except (OSError, ValueError):  # not a readable image: compare exactly
                phash = None
            if phash is not None:
                size = f"{data.get('width')}x{data.get('height')}"
                return fp.Fingerprint("screenshot/perceptual", {"dhash": phash, "size": size})
        return fp.Fingerprint("screenshot/exact", {"png_sha256": data.get("png_sha256")})

    def changed_parts(
        self, before: fp.Fingerprint, after: fp.Fingerprint, options: fp.FingerprintOptions
    ) -> list[str]:
        """Perceptual hashes within `screenshot_threshold` differing bits are the same page."""
        parts = fp.changed_parts(before, after)
        old, new = before.parts.get("dhash"), after.parts.get("dhash")
        if (
            "dhash" in parts
            and isinstance(old, str)
            and isinstance(new, str)
            and len(old) == len(new)
            and fp.hamming(old, new) <= options.screenshot_threshold
        ):
            parts.remove("dhash")
        return parts

    def collect(self, target: str, options: dict[str, Any], ctx: CollectContext) -> Result:
        timeout: float = options["timeout"]
        deadline = time.monotonic() + timeout
        url = netguard.target_url(target)
        parts = netguard.check_url(url)
        default_port = 443 if parts.scheme == "https" else 80
        # Refuse a blocked target before starting anything (the relay would refuse it too).
        netguard.resolve_and_check(parts.hostname or "", parts.port or default_port, ctx.policy)
        with SocksGuard(ctx.policy, connect_timeout=min(10.0, timeout)) as relay:
            context = self._new_context(relay, options)
            try:
                return self._shoot(context, relay, url, options, deadline, timeout)
            except CollectorError:
                raise  # the page's doing; the browser is fine
            except BaseException:
                # A failure (or a soft time limit) may leave the browser mid-operation.
                self.browsers.discard()
                raise
            finally:
                with contextlib.suppress(Error):
                    context.close()

    def _new_context(self, relay: SocksGuard, options: dict[str, Any]) -> BrowserContext:
        for attempt in (1, 2):
            browser = self.browsers.get()
            try:
                return browser.new_context(
                    viewport=options["viewport"],
                    proxy={"server": relay.url, "bypass": "<-loopback>"},
                    service_workers="block",
                    accept_downloads=False,
                )
            except Error:
                if attempt == 2:
                    raise
                self.browsers.discard()  # crashed since the last job: relaunch once
        raise AssertionError("unreachable")  # pragma: no cover

    def _shoot(
        self,
        context: BrowserContext,
        relay: SocksGuard,
        url: str,
        options: dict[str, Any],
        deadline: float,
        timeout: float,
    ) -> Result:
        started = time.perf_counter()

        def left_ms() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TargetTimeout(f"the page was not shot within {timeout}s")
            return left * 1000

        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda msg: _keep_error(console, msg))
        page.on("pageerror", lambda err: _keep(console, f"uncaught: {err}"))
        response = self._navigate(page, relay, url, options["wait_until"], left_ms())
        selector = options["wait_for_selector"]
        if selector:
            try:
                page.wait_for_selector(selector, state="visible", timeout=left_ms())
            except PlaywrightTimeout as exc:
                raise SelectorNotFound(f"{selector!r} was not visible within {timeout}s") from exc
        if options["delay"]:
            page.wait_for_timeout(min(options["delay"] * 1000, left_ms()))
        navigated = time.perf_counter()
        try:
            png = page.screenshot(type="png", full_page=options["full_page"], timeout=left_ms())
        except PlaywrightTimeout as exc:
            raise TargetTimeout(f"taking the screenshot timed out ({timeout}s)") from exc
        done = time.perf_counter()
        width, height = png_size(png)
        status = response.status if response is not None else None
        data = {
            "title": page.title(),
            "final_url": page.url,
            "status_code": status,
            "width": width,
            "height": height,
            "full_page": options["full_page"],
            "png_sha256": hashlib.sha256(png).hexdigest(),
            "console_errors": console,
            "blocked_requests": [r.to_dict() for r in relay.refusals],
            "connections": relay.connections,
            "browser_version": context.browser.version if context.browser else "",
            "timing": {
                "navigation_ms": _ms(navigated - started),
                "screenshot_ms": _ms(done - navigated),
                "total_ms": _ms(done - started),
            },
        }
        result = Result(data=data, artifacts=[Artifact("screenshot.png", "image/png", png)])
        if status is not None and (status == 429 or status >= 500):
            raise TransientResponse(f"{page.url} answered {status}", result)
        return result

    @staticmethod
    def _navigate(
        page: Page, relay: SocksGuard, url: str, wait_until: Any, timeout_ms: float
    ) -> Response | None:
        """Go to `url`; turn the browser's network errors into collector errors."""
        try:
            return page.goto(url, wait_until=wait_until, timeout=timeout_ms)
        except PlaywrightTimeout as exc:
            raise TargetTimeout(f"{url}: the page did not load in time") from exc
        except Error as exc:
            message = exc.message.splitlines()[0] if exc.message else str(exc)
            if "ERR_SOCKS_CONNECTION_FAILED" in message and relay.refusals:
                # The navigation (or a redirect hop of it) went somewhere the guard refused.
                refusal = relay.refusals[-1]
                raise BlockedAddress(f"{url}: navigation refused: {refusal.error.detail}") from exc
            if "ERR_CERT" in message or "ERR_SSL" in message:
                raise TlsError(f"{url}: {message}") from exc
            raise TargetConnectError(f"{url}: {message}") from exc


def _keep(messages: list[str], text: str) -> None:
    if len(messages) < MAX_CONSOLE_ERRORS:
        messages.append(text[:MAX_MESSAGE_CHARS])


def _keep_error(messages: list[str], msg: ConsoleMessage) -> None:
    if msg.type == "error":
        _keep(messages, msg.text)
