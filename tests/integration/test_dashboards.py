"""Grafana dashboards and alert rules: valid, well formed, and naming only metrics that exist.

The structure checks and the PromQL parse (promtool) need no services. The metric-name check
reads the names from a live exposition of the API's and a worker's metrics listeners after a
job ran, and allows only external exporters' metrics (RabbitMQ, Redis, Flower, `up`) besides.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.integration import test_metrics
from tests.metricsenv import WORKER_QUEUES, LiveStack, http, live_stack
from tests.webhookreceiver import webhook_receiver

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DATASOURCE_UID = "collectq-prom"
EXPECTED_DASHBOARDS = {
    "api.json",
    "queues-workers.json",
    "collectors.json",
    "schedules-webhooks.json",
}

# Debian's Prometheus scraping this module's `stack` with deploy/prometheus/prometheus.yml
# (test_metrics' fixture, registered here under a name of its own).
live_prometheus = test_metrics.prometheus
query = test_metrics.query

# Metrics of the exporters collectq does not implement (deploy/prometheus/prometheus.yml).
EXTERNAL_PREFIXES = ("rabbitmq_", "redis_", "flower_")
EXTERNAL_NAMES = {"up"}
# Metrics an alert rule may name before any dashboard shows them (none since issue 13 brought
# the webhook metrics).
RULES_ONLY_PREFIXES: tuple[str, ...] = ()

# Words of PromQL that look like identifiers but name no metric (function and aggregation
# names are recognised by the parenthesis that follows them).
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values query) selects."""
    e = re.sub(r"label_values\(\s*([^,()]*(?:\{[^}]*\})?)\s*,\s*\w+\s*\)", r" \1 ", expr)
    e = re.sub(r"label_values\(\s*\w+\s*\)", " ", e)
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', e)
    e = re.sub(r"\{[^}]*\}", "{}", e)
    e = re.sub(r"\[[^\]]*\]", "[]", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?", e):
        if m.group(2) is None and m.group(1) not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_exprs() -> list[str]:
    return [rule["expr"] for rule in alert_rules()]


def grafana_to_promql(expr: str, rate_interval: str = "5m") -> str:
    """A panel's query as Grafana sends it, every variable at "All"."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", "1m")
    return re.sub(r"\$\w+", ".*", expr.replace("$__range", "1h"))


def unknown_metrics(exprs: list[str], known: set[str], *, rules: bool) -> dict[str, set[str]]:
    """Names in `exprs` that are neither known (live) collectq metrics nor allowed external
    ones, keyed by the expression that uses them."""
    allowed_prefixes = EXTERNAL_PREFIXES + (RULES_ONLY_PREFIXES if rules else ())
    bad: dict[str, set[str]] = {}
    for expr in exprs:
        names = {
            n
            for n in promql_metric_names(expr)
            if n not in known and n not in EXTERNAL_NAMES and not n.startswith(allowed_prefixes)
        }
        if names:
            bad[expr] = names
    return bad


# ------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="collectq-api"} == 0', {"up"}),
        (
            'histogram_quantile(0.95, sum by (queue, le) (rate(a_bucket{queue=~"$queue"}'
            "[$__rate_interval])))",
            {"a_bucket"},
        ),
        (
            "time() - max(b_seconds) > 300 or absent(b_seconds)",
            {"b_seconds"},
        ),
        (
            'sum(rate(c_total{status=~"5.."}[5m])) by (route) / ignoring(status) group_left '
            "sum without (status) (rate(c_total[5m] offset 1h)) > bool 1e3",
            {"c_total"},
        ),
        (
            'label_replace(d, "dst", "x and y", "src", "(.*)") unless on (a, b) e:recorded',
            {"d", "e:recorded"},
        ),
        ("label_values(collectq_http_requests_total, route)", {"collectq_http_requests_total"}),
        ('label_values(f{queue="q"}, queue)', {"f"}),
        ("label_values(route)", set()),
    ],
)
def test_promql_metric_names_are_extracted(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_a_misspelled_metric_in_a_dashboard_is_reported() -> None:
    exprs = dashboard_exprs(load(GRAFANA / "dashboards" / "api.json"))
    known = {n for e in exprs for n in promql_metric_names(e)}
    typo = [e.replace("collectq_http_requests_total", "collectq_http_request_total") for e in exprs]
    assert unknown_metrics(exprs, known, rules=False) == {}
    bad = unknown_metrics(typo, known, rules=False)
    assert bad
    assert {n for names in bad.values() for n in names} == {"collectq_http_request_total"}


# ------------------------------------------------------------------ structure


def test_the_dashboards_are_shipped() -> None:
    assert {p.name for p in DASHBOARDS} == EXPECTED_DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    board = load(path)
    assert board["schemaVersion"] >= 39
    assert board["uid"].startswith("collectq-")
    assert board["title"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == DATASOURCE_UID
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__interval"}
            assert used <= variables, (
                f"{panel['title']} uses undefined variables {used - variables}"
            )
    for variable in board.get("templating", {}).get("list", []):
        assert variable["datasource"]["uid"] == DATASOURCE_UID


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses every query (Grafana's variables replaced by values it would send)."""
    exprs = [e for path in DASHBOARDS for e in dashboard_exprs(load(path))]
    rules = [
        {"record": f"dashboard:query{i}", "expr": grafana_to_promql(expr)}
        for i, expr in enumerate(exprs)
        if not expr.startswith("label_values(")
    ]
    assert len(rules) > 30
    queries = tmp_path / "queries.yml"
    queries.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package"
    result = subprocess.run(
        [promtool, "check", "rules", str(queries)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_points_at_the_dashboards_and_the_datasource() -> None:
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (ds,) = source["datasources"]
    assert ds["uid"] == DATASOURCE_UID
    assert ds["type"] == "prometheus"
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "collectq.yml").read_text()
    )
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    mount = entry["options"]["path"]
    assert f"deploy/grafana/dashboards:{mount}" in (ROOT / "docs" / "operations.md").read_text()


# ------------------------------------------------------------------ live


def exposed_names(text: str) -> set[str]:
    """Every metric name an exposition text offers to PromQL (samples and families)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def stack(vhost: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """A live API and worker after a job with a retry (through its breaker opening and
    closing), a 404, a reaper tick, an open circuit breaker and a delivered webhook: every
    series the dashboards and rules use exists."""
    from app.jobs.breaker import Breakers
    from collectors.base import TargetConnectError

    with (
        live_stack(
            vhost,
            tmp_path_factory.mktemp("dashboards"),
            queues=f"{WORKER_QUEUES},webhooks",
            # flaky's first failure opens its breaker in the worker (a transition), which
            # half-opens a second later and closes on the retry; backoff_max above the
            # cool-down lets the retry wait for it (Retry-After is honoured up to backoff_max,
            # and the suite's 0.2 s would spend every retry while the breaker is still open)
            extra_env={
                "COLLECTQ_POLICY_FLAKY": (
                    "breaker_fail_max=1,breaker_reset_timeout=1,backoff_max=3"
                )
            },
        ) as s,
        webhook_receiver() as hooks,
    ):
        job = s.run_job(["noop", "flaky"], {"flaky": {"fail_times": 1}})
        assert job["status"] == "succeeded", job
        hooked = {"target": "http://127.0.0.1/", "collectors": ["noop"]}
        assert s.api("/v1/jobs", "POST", {**hooked, "callback_url": f"{hooks.base}/d"})[0] == 202
        wait_for(lambda: hooks.received, timeout=20, interval=0.1)
        assert s.api("/no/such/page")[0] == 404
        celery = Celery("t", broker=s.env["COLLECTQ_BROKER_URL"], set_as_current=False)
        celery.send_task("maintenance.reap", queue="maintenance")
        breakers = Breakers(
            s.env["COLLECTQ_REDIS_URL"],
            s.env["COLLECTQ_REDIS_PREFIX"],
            fail_max=1,
            reset_timeout=60,
        )
        breakers.call("http://127.0.0.1:9", lambda: TargetConnectError("refused"))
        wait_for(lambda: "collectq_beat_last_tick" in s.api_metrics(), timeout=10, interval=0.1)
        yield s


@pytest.fixture(scope="module")
def live_names(stack: LiveStack) -> set[str]:
    return exposed_names(stack.api_metrics()) | exposed_names(stack.worker_metrics())


@pytest.mark.integration
def test_dashboards_query_only_metrics_that_exist(live_names: set[str]) -> None:
    assert "collectq_http_requests_total" in live_names  # the exposition was read
    for path in DASHBOARDS:
        assert unknown_metrics(dashboard_exprs(load(path)), live_names, rules=False) == {}, (
            path.name
        )


@pytest.mark.integration
def test_alert_rules_use_only_metrics_that_exist(live_names: set[str]) -> None:
    assert unknown_metrics(rule_exprs(), live_names, rules=True) == {}


@pytest.mark.integration
def test_every_collectq_metric_is_on_a_dashboard(live_names: set[str]) -> None:
    """The other direction: an operator sees every metric collectq exposes somewhere."""
    used = {
        n
        for path in DASHBOARDS
        for e in dashboard_exprs(load(path))
        for n in promql_metric_names(e)
    }
    families = {
        re.sub(r"_(bucket|count|sum|total|created)$", "", n)
        for n in live_names
        if n.startswith("collectq_")
    }
    shown = {re.sub(r"_(bucket|count|sum|total|created)$", "", n) for n in used}
    assert families - shown == set()


# Panels that show only failures: empty on a healthy live stack.
FAILURE_ONLY_PANELS = {
    "5xx ratio (5m)",
    "5xx error ratio by route",
    "Failure ratio (15 min) by collector",
    "Refused by open breakers/s",
    "Webhook failure ratio by event (15 min)",
}


@pytest.mark.integration
def test_dashboards_show_data_from_a_real_prometheus(
    stack: LiveStack, live_prometheus: str
) -> None:
    """Debian's Prometheus scrapes the live listeners (deploy/prometheus/prometheus.yml,
    tests/integration/test_metrics.py): every query runs, and every panel on collectq's
    own metrics shows data, but those that show only failures."""
    # two scrapes of each target (a rate needs them): the API's and the worker's counters
    api = 'collectq_http_requests_total{route="/v1/jobs", method="POST"}'
    worker = 'collectq_collector_retries_total{collector="flaky"}'
    wait_for(lambda: all(query(live_prometheus, f"rate({m}[1m])") for m in (api, worker)), 20, 0.2)
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            exprs = [t["expr"] for t in panel.get("targets", [])]
            results = [
                query(live_prometheus, grafana_to_promql(e, rate_interval="1m")) for e in exprs
            ]
            own = all(n.startswith("collectq_") for e in exprs for n in promql_metric_names(e))
            if own and panel["title"] not in FAILURE_ONLY_PANELS:
                assert all(results), f"{path.name}: {panel['title']} shows no data"


@pytest.mark.integration
def test_alert_rules_evaluate_without_error_on_a_real_prometheus(live_prometheus: str) -> None:
    """The rules Prometheus loaded (prometheus.yml's rule_files) evaluate cleanly on live series."""

    def evaluated() -> list[dict[str, Any]] | None:
        status, body = http(f"{live_prometheus}/api/v1/rules?type=alert")
        assert status == 200, body
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        ready = rules and all(r["health"] != "unknown" for r in rules)
        return rules if ready else None

    rules = wait_for(evaluated, 20, 0.2)
    assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
    assert {r["name"]: r.get("lastError", "") for r in rules if r["health"] != "ok"} == {}
