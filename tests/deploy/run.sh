#!/usr/bin/env bash
# `make test-deploy`: podman set up (tests/deploy/setup.sh), the image built and checked
# (.dockerignore, user, read-only root: imagecheck.py), then the whole compose stack up and
# exercised through the gateway (run.py), always torn down. Root only (rootful podman).
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "export $(bash tests/deploy/setup.sh)"   # DOCKER_HOST=unix://…podman.sock
PY=${PYTHON:-python3}
rc=0
$PY -m tests.deploy.imagecheck || rc=1
$PY -m tests.deploy.run || rc=1
exit $rc
