"""One headless Chromium per worker thread (so per process under prefork), launched lazily.

Playwright's sync API is bound to the thread that started it, so each thread
that takes screenshots owns its own driver and browser. Nothing starts at
import or construction: the first job in a process (after the worker forked)
launches the browser, and a browser that died is relaunched on the next job.

Chromium's sandbox is on whenever the process is not root (Playwright's
``chromium_sandbox=True``; without it Playwright passes ``--no-sandbox``). As
root the sandbox cannot run at all, so root gets ``--no-sandbox`` only where the
wiring allows it (dev/test, or ``COLLECTQ_CHROMIUM_NO_SANDBOX=true``); otherwise
the browser is unavailable, with that reason. What a container needs for the
sandbox: deploy/seccomp/README.md.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Browser, Error, Playwright, sync_playwright

from collectors.base import CollectorUnavailable

__all__ = ["CHROMIUM_ARGS", "NO_SANDBOX_SETTING", "Browsers", "running_as_root"]

NO_SANDBOX_SETTING = "COLLECTQ_CHROMIUM_NO_SANDBOX"

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


def running_as_root() -> bool:
    return os.geteuid() == 0


class Browsers:
    """Hands each thread its own connected browser.

    `allow_no_sandbox`: whether Chromium may run without its sandbox when the process
    is root (the only case it has to). The wiring sets it from the profile and
    ``COLLECTQ_CHROMIUM_NO_SANDBOX``; a non-root process always runs the sandbox.
    """

    def __init__(
        self,
        executable: str,
        args: Sequence[str] = CHROMIUM_ARGS,
        *,
        allow_no_sandbox: bool = True,
    ) -> None:
        self.executable = executable
        self.args = list(args)
        self.allow_no_sandbox = allow_no_sandbox
        self._local = threading.local()
        self.launches = 0

    @property
    def sandbox(self) -> bool:
        """Whether Chromium runs its sandbox: always, unless the process is root."""
        return not running_as_root()

    def check(self) -> None:
        """Raise CollectorUnavailable if the browser cannot be started from here."""
        if not os.path.isfile(self.executable) or not os.access(self.executable, os.X_OK):
            raise CollectorUnavailable(
                f"Chromium not found at {self.executable} "
                "(install Debian's chromium package or set COLLECTQ_CHROMIUM_PATH)"
            )
        if not self.sandbox and not self.allow_no_sandbox:
            raise CollectorUnavailable(
                "the worker runs as root, where Chromium's sandbox cannot run, and running "
                "untrusted pages with --no-sandbox is refused outside the dev and test profiles: "
                f"run the worker as a non-root user (deploy/seccomp/README.md), or set "
                f"{NO_SANDBOX_SETTING}=true to accept the risk"
            )

    def launch_options(self) -> dict[str, Any]:
        """Playwright's launch() keywords (no `--no-sandbox` unless root and allowed)."""
        return {
            "executable_path": self.executable,
            "args": self.args,
            "headless": True,
            "chromium_sandbox": self.sandbox,
        }

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
            browser = playwright.chromium.launch(**self.launch_options())
        except Error as exc:
            playwright.stop()
            detail = f"Chromium at {self.executable} did not start: {exc}"
            if self.sandbox:
                detail += " (its sandbox needs user namespaces: deploy/seccomp/README.md)"
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
