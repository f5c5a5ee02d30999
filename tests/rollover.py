"""Helpers of the secret rollover tests: a secret file replaced the way a secret store's agent
does it, and a bounded stream of job submissions running across the switch.

    with JobStream(api, JOB, count=60, spacing=0.2) as stream:
        stream.wait_accepted(10)
        rewrite(url_file, new_url)
        ...
    assert stream.refused == []
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.apiprocess import RunningApi
from tests.conftest import wait_for

__all__ = ["JobStream", "assert_rolled_over", "assert_still_running", "rewrite"]


def rewrite(path: Path, text: str) -> None:
    """Replace the file at once (written aside, then renamed over it)."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, path)


class JobStream:
    """`count` submissions of `body` (each a job of its own), `spacing` seconds apart, in a
    thread; the ids of the accepted ones and the statuses of the others (-1: no answer)."""

    def __init__(self, api: RunningApi, body: dict[str, Any], count: int, spacing: float) -> None:
        self.api, self.body, self.count, self.spacing = api, {**body, "fresh": True}, count, spacing
        self.accepted: list[str] = []
        self.refused: list[int] = []
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        for _ in range(self.count):
            try:
                status, answer, _ = self.api.call("POST", "/v1/jobs", self.body)
            except OSError:  # no answer at all: what a reload must never cause
                status, answer = -1, None
            if status == 202:
                self.accepted.append(answer["id"])
            else:
                self.refused.append(status)
            time.sleep(self.spacing)

    def wait_accepted(self, n: int, timeout: float = 15) -> None:
        wait_for(lambda: len(self.accepted) >= n, timeout=timeout)

    def __enter__(self) -> JobStream:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._thread.join(self.count * (self.spacing + 10))
        if kind is None:
            assert not self._thread.is_alive(), "the submissions did not finish"


def assert_still_running(api: RunningApi, worker: Any, pids: tuple[int, int]) -> None:
    """The API and the worker are up, and neither was restarted (same pids)."""
    assert api.proc.poll() is None
    assert worker.proc.poll() is None
    assert (api.proc.pid, worker.proc.pid) == pids


def assert_rolled_over(
    stream: JobStream, ended: dict[str, str], logs: str, variable: str, secrets: tuple[str, ...]
) -> None:
    """Every submission across the switch was accepted and succeeded, both processes said
    they reloaded because of `variable`, and no secret reached their logs."""
    assert stream.refused == []
    assert len(set(stream.accepted)) == stream.count
    assert set(ended.values()) == {"succeeded"}
    for process in ("API", "worker"):
        assert f"{process}: reloading settings (changed: {variable})" in logs
    for secret in secrets:
        assert secret not in logs
