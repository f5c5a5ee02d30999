"""The images of `make test-deploy`, built with podman from the local Debian base.

BUILDAH_FORMAT=docker: podman's default OCI format drops HEALTHCHECK.
"""

from __future__ import annotations

import os
import time

from tests.deploy.stack import ROOT, run

BASE = os.environ.get("COLLECTQ_BASE_IMAGE", "localhost/debian:bookworm-slim")
APP = "localhost/collectq:test"
# tag -> (Dockerfile, target, context); the stand-ins of tests/deploy/standins/Dockerfile
IMAGES: dict[str, tuple[str, str | None, str]] = {
    APP: ("deploy/Dockerfile", "runtime", "."),
    "localhost/collectq-screenshot:test": ("deploy/Dockerfile", "screenshot", "."),
    "localhost/collectq-backup:test": ("deploy/compose/backup/Dockerfile", None, "."),
    **{
        f"localhost/collectq-test-{name}:latest": (
            "tests/deploy/standins/Dockerfile",
            name,
            "tests/deploy/standins",
        )
        for name in ("rabbitmq", "redis", "redis-exporter", "nginx", "prometheus", "target")
    },
}


def build(tag: str) -> float:
    """Build one image (layers cached between runs); seconds taken."""
    dockerfile, target, context = IMAGES[tag]
    started = time.monotonic()
    # --network host: build steps reach the package registries through the host's network
    # (the bridge network of the stack has no way out here, and needs none)
    argv = ["podman", "build", "-q", "--network", "host", "-f", dockerfile]
    argv += ["--build-arg", f"BASE_IMAGE={BASE}"]
    argv += ["--target", target] if target else []
    run(
        [*argv, "-t", tag, context],
        env={**os.environ, "BUILDAH_FORMAT": "docker"},
        cwd=ROOT,
        timeout=1800,
    )
    return time.monotonic() - started
