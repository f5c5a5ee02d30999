"""Every collector refuses every spelling of loopback when loopback is not allowlisted.

A canary listens on 127.0.0.1 and ::1 (TCP and UDP, one port) where each probe
would land; it must count zero. Then the same probes with loopback allowed reach
it, so the zero means "refused", not "nobody was listening".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from collectors.base import BlockedAddress, CollectContext, Collector, NetworkPolicy
from tests.canary import Canary
from tests.ssrf import COLLECTORS, LOOPBACK_HOSTS, probe_cases

pytestmark = pytest.mark.collectors

CHROMIUM = os.environ.get("COLLECTQ_CHROMIUM_PATH", "/usr/bin/chromium")
NOTHING = CollectContext(policy=NetworkPolicy())
LOOPBACK = CollectContext(policy=NetworkPolicy.from_strings(["127.0.0.0/8", "::1/128"]))


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    with Canary("127.0.0.1", "::1") as c:
        yield c


@pytest.fixture(scope="module")
def collectors() -> Iterator[dict[str, Collector]]:
    made = {name: cls() for name, cls in COLLECTORS.items()}
    yield made
    for c in made.values():
        c.close()


def _run(collectors: dict[str, Collector], name: str, target: str, raw: dict, ctx) -> None:
    collector = collectors[name]
    collector.collect(target, collector.options_schema().load(raw), ctx)


def test_loopback_spellings_are_blocked_and_the_canary_sees_nothing(canary, collectors) -> None:
    cases = probe_cases(LOOPBACK_HOSTS, canary.port)
    outcomes = {}
    for name, target, raw in cases:
        if name == "screenshot" and not os.access(CHROMIUM, os.X_OK):
            continue
        try:
            _run(collectors, name, target, raw, NOTHING)
            outcomes[(name, target)] = "not blocked"
        except BlockedAddress:
            outcomes[(name, target)] = "blocked_address"
    assert set(outcomes.values()) == {"blocked_address"}, outcomes
    assert len(outcomes) >= 3 * len(LOOPBACK_HOSTS)
    assert canary.hits == 0


def test_control_the_canary_is_reachable_when_loopback_is_allowed(canary, collectors) -> None:
    before = canary.hits
    for name, target, raw in probe_cases(["127.0.0.1", "[::1]"], canary.port):
        if name == "screenshot":
            continue  # a browser against a bare socket only slows this down
        # The canary speaks no protocol, so the collector fails; reaching it is the point.
        with contextlib.suppress(Exception):
            _run(collectors, name, target, raw, LOOPBACK)
    assert canary.hits > before


def test_concealing_policy_names_the_class_not_the_address_for_every_collector(
    canary, collectors
) -> None:
    """Issue 11: in staging/prod a refusal must not tell a tenant what a name resolved to.

    `localhost` resolves (from /etc/hosts) to loopback addresses: the refusal names the host
    and the class, never 127.0.0.1 or ::1. The canary proves nothing was connected to.
    """
    concealing = CollectContext(policy=NetworkPolicy(conceal_internal=True))
    hits_before = canary.hits  # the module's canary counts the other tests' probes too
    details = {}
    for name, target, raw in probe_cases(["localhost"], canary.port):
        if name == "screenshot" and not os.access(CHROMIUM, os.X_OK):
            continue
        with pytest.raises(BlockedAddress) as info:
            _run(collectors, name, target, raw, concealing)
        details[name] = info.value.detail
    assert set(details) >= {"http", "tls"}
    for name, detail in details.items():
        assert "loopback" in detail, (name, detail)
        assert "localhost" in detail, (name, detail)
        assert "127.0.0.1" not in detail, (name, detail)
        assert "::1" not in detail, (name, detail)
    assert canary.hits == hits_before
