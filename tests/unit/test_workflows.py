"""The GitHub workflows (.github/workflows) agree with the repository they build.

`make lint` checks them against GitHub's workflow schema (check-jsonschema); this checks
what a schema cannot: every `make` target they run exists, every image they build names
a stage of deploy/Dockerfile, and the release pushes exactly the variants CI builds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict[Any, Any]:
    """A workflow as YAML 1.1 reads it (the key `on:` becomes True)."""
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def steps(wf: dict[Any, Any]) -> list[dict[str, Any]]:
    return [s for job in wf["jobs"].values() for s in job.get("steps", [])]


def build_variants(wf: dict[Any, Any]) -> dict[str, str]:
    """Image name -> Dockerfile target, from the jobs that run docker/build-push-action."""
    out = {}
    for job in wf["jobs"].values():
        if any(
            s.get("uses", "").startswith("docker/build-push-action") for s in job.get("steps", [])
        ):
            for v in job["strategy"]["matrix"]["variant"]:
                out[v["name"]] = v["target"]
    return out


def test_make_targets_exist() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    run = [
        s["run"] for name in ("ci.yml", "release.yml") for s in steps(workflow(name)) if "run" in s
    ]
    called = {m for r in run for m in re.findall(r"\bmake ([\w-]+)", r)}
    assert called >= {"lint", "test", "test-deploy"}
    assert called <= targets, called - targets


def test_images_are_stages_of_the_dockerfile_and_released_as_built() -> None:
    stages = set(
        re.findall(
            r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M | re.I
        )
    )
    ci, release = build_variants(workflow("ci.yml")), build_variants(workflow("release.yml"))
    assert set(ci.values()) <= stages
    assert ci == release
    assert set(ci) == {"collectq", "collectq-screenshot"}  # the names deploy/k8s uses
    for s in steps(workflow("ci.yml")) + steps(workflow("release.yml")):
        if s.get("uses", "").startswith("docker/build-push-action"):
            assert s["with"]["file"] == "deploy/Dockerfile"


def test_release_runs_ci_first_and_only_on_version_tags() -> None:
    release = workflow("release.yml")
    assert release[True]["push"] == {"tags": ["v*"]}
    assert release["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert "workflow_call" in workflow("ci.yml")[True]
    pushing = [
        j for j in release["jobs"].values() if j.get("permissions", {}).get("packages") == "write"
    ]
    assert pushing
    assert all("ci" in j["needs"] for j in pushing)
