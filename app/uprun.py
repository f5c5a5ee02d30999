"""The supervised dev run (`collectq up`): its run file, and when an API may run open.

While `collectq up` runs it writes `RUN_FILE` (its pid, the URLs of its embedded Redis,
a per-run token). CLI commands started in that directory reach the same services
through it, and only an API child holding the token may run with auth off.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.urls import is_loopback_host

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = ["RUN_FILE", "UP_TOKEN_VAR", "open_api_refusal", "open_request_allowed", "up_run"]

# `collectq up` writes this while it runs (relative to its directory): its pid, the URLs of
# its embedded Redis, and the token it hands its children (`UP_TOKEN_VAR`).
RUN_FILE = Path(".collectq") / "run.json"
UP_TOKEN_VAR = "COLLECTQ_UP_TOKEN"  # noqa: S105 - a name; set by `collectq up` for its children


def up_run(directory: Path | None = None) -> dict[str, Any] | None:
    """What the `collectq up` running in `directory` (default: here) wrote, or None.

    A run file whose process is gone (an `up` that was killed) is ignored.
    """
    try:  # Path.cwd() too: the directory may be gone
        data = json.loads(((directory or Path.cwd()) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not _alive(data.get("pid")):
        return None
    return data


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_api_refusal(
    settings: Settings, token: str | None, run: Mapping[str, Any] | None
) -> str | None:
    """Why an API with auth off must not start (None: auth is on, or this API is the child
    of the `collectq up` whose run file holds `token`)."""
    if settings.auth:
        return None
    expected = str((run or {}).get("token") or "")
    if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return None
    return (
        "COLLECTQ_AUTH=off is only allowed for the API that `collectq up` supervises; "
        "set COLLECTQ_AUTH=on and create a key (collectq keys create)"
    )


def open_request_allowed(local: str | None, remote: str | None) -> bool:
    """Whether an API with auth off may answer a connection: only when both its local
    address (the socket the server accepted it on) and the peer are loopback. A unix
    socket or an unknown address is refused (a proxy could stand behind either)."""
    return (
        bool(local and remote) and is_loopback_host(local or "") and is_loopback_host(remote or "")
    )
