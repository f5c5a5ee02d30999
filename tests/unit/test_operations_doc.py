"""docs/operations.md stays true to the code and the deployment files it describes.

Names are read from their one definition (metrics from app/metrics*.py, queues and pool
defaults from app/jobs/names.py and app/options.py, services from docker-compose.yml,
commands from the click CLI), never from a copy. The alerts' runbook sections are checked
by tests/unit/test_alert_rules.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml

from app.cli.main import main
from app.jobs.names import MAINTENANCE_QUEUE, WEBHOOKS_QUEUE, collector_queue
from app.options import POOL_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC_SOURCES = [ROOT / "app" / "metrics.py", ROOT / "app" / "metrics_scrape.py"]
# Prometheus appends these to a metric's name in the exposition.
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def doc() -> str:
    return OPERATIONS.read_text()


def section(title: str) -> str:
    """The text of `## title` up to the next `## ` heading."""
    text = doc()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def defined_metrics() -> set[str]:
    names: set[str] = set()
    for source in METRIC_SOURCES:
        names |= set(re.findall(r'"(collectq_[a-z_]+)"', source.read_text()))
    return names


def test_every_metric_the_guide_names_is_defined() -> None:
    defined = defined_metrics()
    assert "collectq_queue_depth" in defined  # the sources were read
    for name in set(re.findall(r"\bcollectq_[a-z_]+", doc())):
        base = name
        for suffix in SUFFIXES:
            if base.removesuffix(suffix) in defined:
                base = base.removesuffix(suffix)
        assert base in defined, f"docs/operations.md names {name}, which no code defines"


def test_the_scaling_table_has_every_queue_with_its_pool_defaults() -> None:
    scaling = section("Scaling: which queue, when")
    for queue in (MAINTENANCE_QUEUE, WEBHOOKS_QUEUE):
        assert f"`{queue}`" in scaling
    for name, pool in POOL_DEFAULTS.items():
        rows = [line for line in scaling.splitlines() if f"`{collector_queue(name)}`" in line]
        assert rows, f"no row for {collector_queue(name)}"
        (row,) = rows
        assert f"{pool.pool} × {pool.concurrency}, prefetch {pool.prefetch}" in row, row


def test_every_compose_service_is_in_the_topology() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    topology = section("Topology")
    missing = [
        name
        for name in services
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", topology)
        and not (name.startswith("worker-") and "worker-&lt;collector&gt;" in topology)
    ]
    assert not missing, f"docker-compose.yml services missing from the Topology: {missing}"


# `docs/operations.md` cites files as `path`; placeholders (<name>, *, …) are not files.
CITED = re.compile(
    r"`((?:deploy|app|tests|docs)/[\w./-]+|docker-compose\.yml|compose\.override\.yml)`"
)


def test_every_file_the_guide_cites_exists() -> None:
    cited = set(CITED.findall(doc()))
    assert "deploy/backup/" in cited or any(p.startswith("deploy/backup") for p in cited)
    missing = sorted(p for p in cited if not (ROOT / p).exists())
    assert not missing, f"docs/operations.md cites files that do not exist: {missing}"


@pytest.mark.parametrize(
    ("path", "option"),
    [
        (["keys", "rotate"], "--overlap"),
        (["keys", "revoke"], None),
        (["keys", "list"], None),
        (["migrate"], "--dry-run"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_the_commands_the_guide_gives_exist(path: list[str], option: str | None) -> None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"no `collectq {' '.join(path)}`"
        command = found
    assert f"collectq {' '.join(path)}" in doc()
    if option:
        assert option in {o for p in command.params for o in getattr(p, "opts", [])}


@pytest.mark.parametrize(
    "variable",
    ["BACKUP_DIR", "KEEP", "REDIS_URL", "RABBITMQCTL", "RESTORE_PORT", "BACKUP_INTERVAL"],
)
def test_the_backup_settings_the_guide_names_are_read_by_the_scripts(variable: str) -> None:
    assert f"`{variable}`" in doc() or f"{variable}=" in doc()
    scripts = [*(ROOT / "deploy" / "backup").glob("*.sh"), ROOT / "deploy/compose/backup/loop.sh"]
    assert any(variable in script.read_text() for script in scripts)
