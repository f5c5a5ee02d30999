"""`collectq collect` shows progress on a terminal (stderr), and only there."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys

from app.cli.local import TerminalProgress, progress_line
from tests.conftest import ROOT
from tests.plugins import PLUGINS

FAILED = {
    "status": "failed",
    "duration_ms": 1234.5,
    "error": {"type": "connect_error", "detail": "refused " * 20, "retryable": True},
}


def test_progress_line_says_running_then_outcome_and_duration() -> None:
    assert progress_line(1, 3, "dns", 10) == "[1/3] dns         running…"
    done = progress_line(2, 3, "http", 4, {"status": "succeeded", "duration_ms": 210.0})
    assert done == "[2/3] http  succeeded  0.21 s"
    failed = progress_line(3, 3, "tls", 4, FAILED)
    assert failed.startswith("[3/3] tls   failed     1.23 s  connect_error: refused refused")
    assert failed.endswith("…")
    assert len(failed) < 140  # a long detail is cut


def test_terminal_progress_rewrites_the_running_line_with_the_outcome() -> None:
    out = io.StringIO()
    progress = TerminalProgress(out, ["http", "screenshot"])
    progress.started(1, "http")
    progress.finished(1, "http", {"status": "succeeded", "duration_ms": 5.0})
    assert out.getvalue() == (
        "[1/2] http        running…\r\x1b[K[1/2] http        succeeded  0.01 s\n"
    )


def _collect(stderr: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTQ_")}
    env |= {"COLLECTQ_ENV": "dev", "COLLECTQ_PLUGINS": PLUGINS}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "collect", "http://127.0.0.1/", "-c", "noop,nope"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_collect_shows_progress_on_a_terminal_and_keeps_stdout_json() -> None:
    master, slave = pty.openpty()
    try:
        proc = _collect(stderr=slave)
        os.close(slave)
        stdout, _ = proc.communicate(timeout=60)
        terminal = _read_all(master)
    finally:
        os.close(master)
    assert proc.returncode == 1  # one of the two failed
    envelope = json.loads(stdout)  # untouched by the progress
    assert envelope["results"]["noop"]["status"] == "succeeded"
    assert "[1/2] noop  running…\r\x1b[K[1/2] noop  succeeded" in terminal
    assert "[2/2] nope  failed" in terminal


def test_collect_shows_no_progress_into_a_pipe() -> None:
    proc = _collect(stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=60)
    json.loads(stdout)
    assert b"[1/2]" not in stderr
