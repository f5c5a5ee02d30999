"""Non-loopback internal addresses are refused by every collector — proven inside a
network namespace with only loopback, so no probe can leave the machine even if
the guard were wrong (DEVELOPERS rule: never probe such addresses on the host network).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.ssrf import NON_LOOPBACK_HOSTS

pytestmark = pytest.mark.collectors


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    name = f"cq{uuid.uuid4().hex[:8]}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        _ip("netns", "delete", name)


def test_every_collector_refuses_internal_addresses_inside_a_loopback_only_namespace(
    namespace,
) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.netns_probe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    probes = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(probes) >= 3 * len(NON_LOOPBACK_HOSTS)
    assert {p["collector"] for p in probes} == {"http", "dns", "tls", "screenshot"}
    not_blocked = [p for p in probes if p["type"] != "blocked_address"]
    assert not_blocked == []
