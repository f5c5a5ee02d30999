"""Auth off outside `collectq up`: a real gunicorn (and `collectq api`) on 127.0.0.1 refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.e2e
COLLECTQ = str(Path(sys.executable).parent / "collectq")


def _open_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTQ_")}
    return env | {"COLLECTQ_ENV": "dev", "COLLECTQ_AUTH": "off"}


def _finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int | None, str]:
    """The exit code within `timeout` (None: still serving, then stopped) and the output."""
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        return None, out


def test_gunicorn_with_auth_off_outside_up_refuses_to_start(tmp_path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--pythonpath", str(ROOT), "--bind",
         f"127.0.0.1:{port}", "--workers", "1", "app.wsgi:application"],
        cwd=tmp_path, env=_open_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    code, out = _finish(proc)
    assert code not in (None, 0), out
    assert "collectq up" in out


def test_collectq_api_with_auth_off_outside_up_refuses_to_start(tmp_path) -> None:
    proc = subprocess.Popen(
        [COLLECTQ, "api", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=tmp_path, env=_open_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    code, out = _finish(proc)
    assert code == 2, out
    assert "collectq up" in out
