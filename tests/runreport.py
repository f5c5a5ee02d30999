"""A test run that skips must say why, and only for reasons this project accepts.

A skip is allowed only for a reason in ALLOWED_SKIPS (something a machine may
lack that the product does not need: root for network namespaces, an IPv6
loopback). Any other skip fails the run and is listed. Every run writes its
counts to SESSION for the one-line summary `python -m tests.summary` prints.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "tests" / "results" / "session.json"

# Substrings of the skip reasons a green run may carry.
ALLOWED_SKIPS = (
    "network namespaces need root",  # tests/integration/test_ssrf_netns.py, not root
    "cannot create a network namespace",  # the same, a kernel without netns support
    "cannot listen on ::1",  # a machine without an IPv6 loopback
    "port taken on 127.0.0.1",  # a spare port taken by another process meanwhile
)


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _skips(terminal: Any) -> Counter[str]:
    return Counter(_reason(r) for r in terminal.stats.get("skipped", []))


def unexpected(skips: Counter[str]) -> dict[str, int]:
    return {r: n for r, n in skips.items() if not any(a in r for a in ALLOWED_SKIPS)}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    bad = unexpected(_skips(terminalreporter))
    if bad:
        terminalreporter.section("skips that are not allowed", red=True)
        for reason, count in sorted(bad.items()):
            terminalreporter.line(f"{count} x {reason}")
        terminalreporter.line(
            "A skip is allowed only for a reason in tests/runreport.py ALLOWED_SKIPS; "
            "`make test` installs and starts what the tests need, `make test-fast` runs "
            "the tests that need no services."
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None:
        return
    skips = _skips(terminal)
    if unexpected(skips) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    stats = terminal.stats
    SESSION.parent.mkdir(parents=True, exist_ok=True)
    SESSION.write_text(
        json.dumps(
            {
                "passed": len(stats.get("passed", [])),
                "failed": len(stats.get("failed", [])),
                "errors": len(stats.get("error", [])),
                "skipped": dict(skips),
                "faults_ran": any(
                    r.nodeid.startswith("tests/faults/")
                    for kind in ("passed", "failed", "error")
                    for r in stats.get(kind, [])
                ),
                "exit": int(session.exitstatus),
            }
        )
    )
