"""One headless Chromium per worker thread (so per process under prefork), launched lazily.

Playwright's sync API is bound to the thread that started it, so each thread
that takes screenshots owns its own driver and browser. Nothing starts at
import or construction: the first job in a process (after the worker forked)
launches the browser, and a browser that died is relaunched on the next job.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from playwright.sync_api import Browser, Error, Playwright, sync_playwright

from collectors.base import CollectorUnavailable

__all__ = ["CHROMIUM_ARGS", "Browsers"]

# The page's connections all go through the context's SOCKS relay; these keep Chromium
# from opening any other: no WebRTC UDP outside the proxy, no DNS prefetch, no QUIC.
# (No --disable-features here: Chromium keeps only the last one, and Playwright passes its own.)
CHROMIUM_ARGS = (
    "--disable-dev-shm-usage",
    "--dns-prefetch-disable",
    "--disable-quic",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--no-first-run",
    "--disable-sync",
)


@dataclass
class _Slot:
    pid: int
    playwright: Playwright
    browser: Browser


class Browsers:
    """Hands each thread its own connected browser."""

    def __init__(self, executable: str, args: Sequence[str] = CHROMIUM_ARGS) -> None:
        self.executable = executable
        self.args = list(args)
        self._local = threading.local()
        self.launches = 0

    def check(self) -> None:
        """Raise CollectorUnavailable if the browser cannot be started from here."""
        if not os.path.isfile(self.executable) or not os.access(self.executable, os.X_OK):
            raise CollectorUnavailable(
                f"Chromium not found at {self.executable} "
                "(install Debian's chromium package or set COLLECTQ_CHROMIUM_PATH)"
            )

    def get(self) -> Browser:
        """This thread's browser, (re)launched if there is none or it died."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is not None and slot.pid != os.getpid():
            slot = self._local.slot = None  # inherited through fork: not ours to drive
        if slot is not None and slot.browser.is_connected():
            return slot.browser
        if slot is not None:
            self.discard()
        self.check()
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(
                executable_path=self.executable, args=self.args, headless=True
            )
        except Error as exc:
            playwright.stop()
            detail = f"Chromium at {self.executable} did not start: {exc}"
            raise CollectorUnavailable(detail) from exc
        self._local.slot = _Slot(os.getpid(), playwright, browser)
        self.launches += 1
        return browser

    def discard(self) -> None:
        """Close this thread's browser (after a crash or an interrupted job)."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        self._local.slot = None
        if slot is None or slot.pid != os.getpid():
            return
        with contextlib.suppress(Error):
            slot.browser.close()
        with contextlib.suppress(Error):
            slot.playwright.stop()

    def close(self) -> None:
        """Close the calling thread's browser; other threads' end with the process."""
        self.discard()
