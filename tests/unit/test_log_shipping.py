"""The log-shipping drop-in (deploy/logging/): Vector's remap program, run on real log lines.

The remap program of deploy/logging/vector.yaml is compiled and run by Vector's own VRL
compiler and runtime (the `pyvrl` package embeds the VRL crate) on lines that app/logs.py's
JSON handler writes with the log context of app/logcontext.py bound: the field names come
from the code, not from a copy. Vector itself is not packaged for Debian or PyPI, so the
rest of the config (source, sink options) is checked for its wiring and for the fields its
templates read; `vector validate` is documented in deploy/logging/README.md. The compose
drop-in is validated against the compose specification's schema (check-jsonschema).
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.logcontext import FIELDS, log_context
from app.logs import build_handler

try:
    import pyvrl
except ImportError:  # pragma: no cover - the dev group installs it
    pyvrl = None

ROOT = Path(__file__).resolve().parents[2]
LOGGING = ROOT / "deploy" / "logging"
VECTOR = LOGGING / "vector.yaml"
COMPOSE = LOGGING / "compose.logging.yml"
REMAP = "collectq_lines"
SINK = "loki"
# docker_logs's event time: when the engine read the line (not the line's own time). A
# timestamp in Vector; pyvrl takes no timestamp in, and the program only passes it on.
RECEIVED = "2026-01-01T00:00:00Z"


def config() -> dict[str, Any]:
    return yaml.safe_load(VECTOR.read_text())


def template_fields(template: str) -> list[str]:
    """The event paths a Vector template reads (`{{ origin.service }}` → origin.service)."""
    return re.findall(r"\{\{\s*([\w.]+)\s*\}\}", template)


def lookup(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        assert isinstance(value, dict), f"no {path} in {event}"
        assert part in value, f"no {path} in {event}"
        value = value[part]
    return value


@pytest.fixture(scope="module")
def remap() -> Any:
    if pyvrl is None:
        pytest.fail(
            "pyvrl (Vector's VRL compiler) is not installed: it belongs to the dev group "
            "(`uv add --dev pyvrl==0.0.2`)"
        )
    source = config()["transforms"][REMAP]["source"]
    # pyvrl answers the program's last value; Vector emits the event: end with the event.
    return pyvrl.Transform(source + "\n.")


def docker_event(line: str, service: str = "api") -> dict[str, Any]:
    """A line as Vector's docker_logs source hands it on."""
    return {
        "message": line,
        "label": {"com.docker.compose.service": service, "com.docker.compose.project": "cq"},
        "container_name": f"cq-{service}-1",
        "container_id": "0123456789ab",
        "image": "collectq:latest",
        "stream": "stderr",
        "source_type": "docker_logs",
        "timestamp": RECEIVED,
    }


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the product's JSON handler into a buffer."""
    buffer = io.StringIO()
    logger = logging.getLogger("collectq.test_log_shipping")
    logger.handlers[:] = [build_handler(json_lines=True, stream=buffer)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, buffer
    logger.handlers[:] = []
    logger.propagate = True


def written(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_every_context_field_becomes_structured_metadata(remap, json_lines) -> None:
    logger, buffer = json_lines
    bound = {name: f"{name}-value" for name in FIELDS}
    with log_context(**bound):
        logger.info("POST /v1/jobs 202", extra={"route": "/v1/jobs", "status": 202})
    (line,) = written(buffer)
    original = json.loads(line)

    event = remap.remap(docker_event(line))

    assert event["collectq_context"] == bound  # exactly app/logcontext.py FIELDS
    # The Loki line is the line as written (plus where it came from), nothing renamed.
    assert {k: event[k] for k in original} == original
    assert event["origin"] == {"service": "api", "container": "cq-api-1", "stream": "stderr"}
    assert event["level"] == "info"
    assert event["timestamp"] == datetime.fromisoformat(original["time"])
    assert event["timestamp"] != RECEIVED


def test_a_line_without_context_gets_no_metadata_and_keeps_its_traceback(remap, json_lines) -> None:
    logger, buffer = json_lines
    try:
        raise ZeroDivisionError("planned")
    except ZeroDivisionError:
        logger.exception("boom")
    (line,) = written(buffer)

    event = remap.remap(docker_event(line, service="worker-http"))

    assert event["collectq_context"] == {}
    assert event["level"] == "error"
    assert "ZeroDivisionError: planned" in event["exc_info"]
    assert event["origin"]["service"] == "worker-http"


def test_only_context_fields_are_metadata_not_the_other_extras(remap, json_lines) -> None:
    logger, buffer = json_lines
    with log_context(request_id="rid-42"):
        logger.warning("webhook delivery failed", extra={"job_id": "j_1", "error": "timeout"})
    (line,) = written(buffer)

    event = remap.remap(docker_event(line))

    assert event["collectq_context"] == {"request_id": "rid-42", "job_id": "j_1"}
    assert event["error"] == "timeout"


def test_the_lines_time_and_level_are_what_the_mapping_reads(remap, json_lines) -> None:
    """`time` and `level`, as app/logs.py writes them, become the timestamp and the label."""
    logger, buffer = json_lines
    logger.warning("careful")
    fields = json.loads(written(buffer)[0])

    event = remap.remap(docker_event(json.dumps(fields)))
    assert event["level"] == fields["level"] == "warning"
    assert event["timestamp"] == datetime.fromisoformat(fields["time"])

    def without(name: str) -> dict[str, Any]:
        line = json.dumps({k: v for k, v in fields.items() if k != name})
        return remap.remap(docker_event(line))

    assert without("time")["timestamp"] == RECEIVED
    assert without("level")["level"] == "unknown"


def test_the_gateways_access_line_carries_its_request_id(remap) -> None:
    """deploy/nginx's JSON access log: no level, nginx's own time format, the request id."""
    line = json.dumps(
        {
            "time": "2026-11-30T05:24:39+00:00",
            "logger": "nginx.access",
            "request_id": "rid-42",
            "method": "POST",
            "path": "/v1/jobs",
            "status": 202,
        }
    )
    event = remap.remap(docker_event(line, service="gateway"))
    assert event["collectq_context"] == {"request_id": "rid-42"}
    assert event["level"] == "unknown"
    assert event["timestamp"] == datetime.fromisoformat("2026-11-30T05:24:39+00:00")
    assert event["status"] == 202


@pytest.mark.parametrize(
    "line",
    ['{"level": "Ω-high", "msg": "x"}', '{"level": 3, "msg": "x"}'],
    ids=["unknown-word", "not-a-string"],
)
def test_a_level_outside_the_known_set_is_unknown(remap, line) -> None:
    """Labels make streams: a stray level value must not make new ones."""
    assert remap.remap(docker_event(line))["level"] == "unknown"


@pytest.mark.parametrize("line", ["[1, 2]", '"quoted"', "42", "{}", "{not json"])
def test_json_that_is_not_an_object_is_shipped_as_text(remap, line) -> None:
    assert remap.remap(docker_event(line)) == {
        "message": line,
        "level": "unknown",
        "timestamp": RECEIVED,
        "collectq_context": {},
        "origin": {"service": "api", "container": "cq-api-1", "stream": "stderr"},
    }


def test_other_services_text_lines_are_kept_as_text(remap) -> None:
    line = "1:M 30 Nov 2026 05:24:39.271 * Ready to accept connections tcp"
    event = remap.remap(docker_event(line, service="redis"))
    assert event["message"] == line
    assert event["level"] == "unknown"
    assert event["origin"]["service"] == "redis"


@pytest.mark.parametrize(
    ("pod_labels", "service"),
    [
        ({"app.kubernetes.io/component": "api"}, "api"),
        (
            {"app.kubernetes.io/component": "worker", "collectq.io/queue": "collect.http"},
            "worker-http",
        ),
        (
            {"app.kubernetes.io/component": "worker", "collectq.io/queue": "maintenance"},
            "worker-maintenance",
        ),
        ({}, "api-container"),
    ],
)
def test_kubernetes_pods_get_the_compose_service_names(remap, json_lines, pod_labels, service):
    """deploy/k8s labels: a worker's queue names it as compose does (one query for both)."""
    logger, buffer = json_lines
    logger.info("ready")
    event = remap.remap(
        {
            "message": written(buffer)[0],
            "kubernetes": {
                "pod_name": "collectq-api-7d9f-abcde",
                "container_name": "api-container",
                "pod_labels": pod_labels,
            },
            "stream": "stderr",
            "timestamp": RECEIVED,
        }
    )
    assert event["origin"] == {
        "service": service,
        "container": "collectq-api-7d9f-abcde",
        "stream": "stderr",
    }


def test_the_sinks_templates_read_fields_every_event_has(remap, json_lines) -> None:
    """A template field missing from an event is a rendering error in Vector."""
    sink = config()["sinks"][SINK]
    templates = [*sink["labels"].values(), *sink["structured_metadata"].values()]
    paths = [p for t in templates for p in template_fields(t)]
    assert "collectq_context" in paths
    logger, buffer = json_lines
    logger.info("hello")
    events = [
        remap.remap(docker_event(written(buffer)[0])),
        remap.remap(docker_event("plain text", service="rabbitmq")),
    ]
    for event in events:
        for path in paths:
            value = lookup(event, path)
            assert value is not None
    # Ids are structured metadata, never labels (a label value per id is a stream per id).
    label_paths = {p for t in sink["labels"].values() for p in template_fields(t)}
    assert label_paths.isdisjoint(FIELDS)
    assert sink["remove_structured_metadata_fields"] is True


def test_templates_only_fill_labels_and_metadata_never_where_lines_are_sent() -> None:
    """Why the sink may opt out of Vector's template confinement (vector.yaml says so)."""
    sink = config()["sinks"][SINK]
    assert sink["dangerously_allow_unconfined_template_resolution"] is True
    templated = {key for key, value in sink.items() if "{{" in json.dumps(value)}
    assert templated == {"labels", "structured_metadata"}
    assert "tenant_id" not in sink
    # label names are fixed; only the metadata expands keys, from the filtered context
    assert all("{{" not in name for name in sink["labels"])
    assert list(sink["structured_metadata"]) == ["*"]


def test_vrl_compiler_refuses_a_broken_program() -> None:
    """The compiler is real: an unknown function is a compile error, not a silent pass."""
    if pyvrl is None:
        pytest.fail("pyvrl is not installed (see the remap fixture)")
    source = config()["transforms"][REMAP]["source"].replace("parse_json(", "parse_jsn(")
    with pytest.raises(ValueError, match="undefined function"):
        pyvrl.Transform(source)


def test_pipeline_wiring_reaches_the_sink_from_the_source() -> None:
    cfg = config()
    components = {**cfg["sources"], **cfg["transforms"], **cfg["sinks"]}
    for name, component in {**cfg["transforms"], **cfg["sinks"]}.items():
        for upstream in component["inputs"]:
            assert upstream in components, f"{name} reads {upstream}, which is not defined"
    assert cfg["sinks"][SINK]["inputs"] == [REMAP]
    assert cfg["transforms"][REMAP]["inputs"] == list(cfg["sources"])


def test_compose_drop_in_is_valid_compose_and_mounts_this_config() -> None:
    result = subprocess.run(
        [
            Path(sys.executable).with_name("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            COMPOSE,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    vector = yaml.safe_load(COMPOSE.read_text())["services"]["vector"]
    config_path = vector["command"][vector["command"].index("--config") + 1]
    assert f"./{VECTOR.relative_to(ROOT)}:{config_path}:ro" in vector["volumes"]
    assert any(v.endswith(":/var/run/docker.sock:ro") for v in vector["volumes"])
