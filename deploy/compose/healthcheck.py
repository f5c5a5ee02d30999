"""The image's HEALTHCHECK: one script for every role, told apart by the running command.

- api (gunicorn): ``GET /health`` on the port of its ``--bind``;
- flower: ``GET /healthcheck`` (answers without credentials);
- worker: its metrics listener (``COLLECTQ_WORKER_METRICS_PORT``) answers; without one,
  ``celery inspect ping`` of this node (costs an interpreter and a broker round trip);
- beat: its process runs (redbeat's lock in Redis keeps exactly one active).

Standard library only: it runs with the image's python3 (no venv imports, cheap).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path


def _commands() -> list[list[str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                out.append(raw.decode(errors="replace").rstrip("\0").split("\0"))
    return out


def _get(port: int, path: str) -> bool:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(200 <= resp.status < 300)
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return False


def _arg(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _worker(argv: list[str]) -> bool:
    port = int(os.environ.get("COLLECTQ_WORKER_METRICS_PORT") or 0)
    if port:
        return _get(port, "/metrics")
    node = (_arg(argv, "-n") or "celery@%h").replace("%h", os.uname().nodename)
    ping = ["celery", "-A", "app.worker", "inspect", "ping", "-d", node, "--timeout", "5"]
    return subprocess.run(ping, capture_output=True, check=False).returncode == 0  # noqa: S603


def check() -> bool:
    commands = _commands()
    for argv in commands:
        text = " ".join(argv)
        if "gunicorn" in text and "--bind" in argv:
            return _get(int((_arg(argv, "--bind") or ":8000").rpartition(":")[2]), "/health")
        if " flower" in text and "celery" in text:
            return _get(int(os.environ.get("COLLECTQ_FLOWER_PORT") or 5555), "/healthcheck")
        if "celery" in text and " worker" in text:
            return _worker(argv)
        if "celery" in text and " beat" in text:
            return True
    print("no collectq process found", file=sys.stderr)
    return False


if __name__ == "__main__":
    sys.exit(0 if check() else 1)
