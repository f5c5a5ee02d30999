"""Alert rules: promtool accepts them, their unit tests pass, and each has a runbook section.

promtool comes with Debian's `prometheus` package (tests/services.sh installs it). The
metric names the rules use are checked against a live exposition in
tests/integration/test_dashboards.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning"}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: install Debian's prometheus package (tests/services.sh)"
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text(RULES.read_text().replace("expr: ", "expr: sum(", 1))  # unclosed
    result = promtool("check", "rules", broken)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_rule_unit_tests_catch_a_missing_volume_guard(tmp_path: Path) -> None:
    """Without the minimum-volume guard, three failures in a quiet hour would page someone."""
    guard = (
        "and on (collector) sum by (collector) (increase(collectq_jobs_finished_total[15m])) >= 20"
    )
    text = RULES.read_text()
    assert guard in text
    (tmp_path / "alerts.yml").write_text(text.replace(guard, ""))
    shutil.copy(RULE_TESTS, tmp_path / "alerts.test.yml")
    result = promtool("test", "rules", tmp_path / "alerts.test.yml")
    assert result.returncode != 0
    assert "low volume" in result.stdout + result.stderr


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_tells_the_operator_what_to_do(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("Collectq")
    assert rule.get("for"), "an alert fires on a lasting condition, not one evaluation"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert len(annotations["description"]) > 80
    page, _, anchor = annotations["runbook"].partition("#")
    assert page == "docs/operations.md"
    assert anchor == rule["alert"].lower()
    assert anchor in github_anchors(OPERATIONS.read_text()), f"no section {anchor} in {page}"


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    cases = [
        check
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in test["alert_rule_test"]
    ]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert names - fired == set(), "alerts with no case that fires them"
    assert names - silent == set(), "alerts with no case that must stay silent"
