"""Shared views leak nothing across tenants (issue 11, item 5).

`/v1/status` and its legacy alias show a non-admin caller aggregate counts only: no
breaker hosts, worker node names, versions or service URLs; the full view needs `admin`.
The public `/ready` says which dependency failed, never a host, port or exception text.
"""

from __future__ import annotations

import json
import platform
import socket
from importlib.metadata import version
from typing import Any

import pytest

from app.runtime import runtime
from collectors.base import TargetConnectError
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration

SECRET_HOST = "tenant-a-internal.example"


def _reader(app: Any) -> Any:
    """A test client with a `jobs:read` key of another owner (not admin)."""
    _, token = runtime(app).keys.create(
        owner="tenant-b",
        name="reader",
        scopes=["jobs:read"],
        rate_limits={"read": "100000/minute"},
    )
    return app.test_client(api_key=token)


def _trip(app: Any, host: str) -> None:
    """Record failures against `host`'s breaker (what a worker does on a failed fetch)."""
    breakers = runtime(app).breakers
    for _ in range(breakers.fail_max):
        breakers.call(host, lambda: TargetConnectError("refused"))
    assert host in breakers.states()


def _leaks(body: dict[str, Any], node: str) -> list[str]:
    text = json.dumps(body)
    words = {
        "breaker host": SECRET_HOST,
        "worker node": node,
        "machine name": socket.gethostname(),
        "collectq version": version("collectq"),
        "celery version": version("celery"),
        "python version": platform.python_version(),
        "redis url": "redis://",
        "broker url": "amqp://",
        "address": "127.0.0.1",
    }
    return [what for what, word in words.items() if word and word in text]


@pytest.mark.parametrize("path", ["/v1/status", "/containers/status"])
def test_status_shows_a_non_admin_only_aggregates(make_app, start_worker, path: str) -> None:
    app = make_app()
    admin = app.test_client()
    _trip(app, SECRET_HOST)
    start_worker(queues="collect.noop")
    full = wait_for(
        lambda: (
            (s := admin.get(path)).status_code == 200
            and s.json["queues"]["collect.noop"]["workers"]
            and s.json
        )
    )
    node = full["queues"]["collect.noop"]["workers"][0]
    # the admin's view is the full one
    assert SECRET_HOST in full["breakers"]
    assert full["versions"]["collectq"] == version("collectq")
    assert set(_leaks(full, node)) >= {"breaker host", "worker node", "collectq version"}

    resp = _reader(app).get(path)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert _leaks(body, node) == []
    # aggregate counts: as useful for "is the service healthy", nothing to identify anyone
    assert body["status"] == full["status"]
    assert body["redis"] == {"ok": True}
    assert body["broker"] == {"ok": True}
    assert body["queues"]["collect.noop"]["workers"] == 1
    assert isinstance(body["queues"]["collect.noop"]["depth"], int)
    assert body["breakers"]["hosts"] >= 1
    assert body["breakers"]["open"] >= 1
    assert "versions" not in body
    assert body["collectors"]["noop"] == {"available": True}


def test_ready_with_redis_down_names_the_dependency_only(make_app) -> None:
    port = free_port()  # nothing listens there
    app = make_app(COLLECTQ_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    resp = app.test_client(api_key="").get("/ready")
    assert resp.status_code == 503
    body = resp.json
    assert body["dependency"] == "redis"
    text = resp.get_data(as_text=True)
    for word in ("127.0.0.1", str(port), "Error", "refused", "Connection", "redis://"):
        assert word not in text, (word, body)
