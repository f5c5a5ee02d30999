# collectq: `make run` starts the whole service, `make test` runs the suite.
PYTHON ?= python3
UV ?= $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

CHROMIUM ?= /usr/bin/chromium

.PHONY: venv chromium run test test-fast test-faults test-deploy soak bench bench-streams bench-load lint clean

$(BIN)/collectq: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

venv: $(BIN)/collectq

# The screenshot collector drives Debian's Chromium (no browser download). Installed
# when missing and we may (root with apt); otherwise the collector reports itself
# unavailable and its tests are skipped.
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: no Chromium at $(CHROMIUM): the screenshot collector stays unavailable"; \
	  fi; }

run: venv chromium
	$(BIN)/collectq up

# The whole suite in one run: unit, collectors against local servers, integration against
# the real Redis and RabbitMQ, e2e, and the fault tests (tests/faults: their own redis-server
# and RabbitMQ node, broken on purpose). tests/services.sh first installs (when allowed) and
# starts what the run needs, and stops afterwards what it started. The slowest tests are
# listed; the end is the fault table and one summary line (tests/summary.py). A skip for a
# reason not allowed (tests/runreport.py) fails the run.
test: venv
	@bash tests/services.sh up
	@trap 'bash tests/services.sh down' EXIT; rc=0; \
	  $(BIN)/python -m pytest --durations=15 || rc=$$?; \
	  $(BIN)/python -m tests.summary || [ $$rc -ne 0 ] || rc=1; \
	  exit $$rc

# Tests that need no service (no Redis, no RabbitMQ): unit tests and collectors against
# local HTTP/DNS/TLS servers and Chromium. Seconds, not minutes.
test-fast: venv
	$(BIN)/python -m pytest -m "not integration and not e2e and not faults" --durations=5

# Only the fault tests (tests/faults): they start their own redis-server and RabbitMQ
# node and break them, and real workers, on purpose. Prints the table of the run.
test-faults: venv
	@bash tests/services.sh up
	@trap 'bash tests/services.sh down' EXIT; rc=0; \
	  $(BIN)/python -m pytest tests/faults --durations=15 || rc=$$?; \
	  $(BIN)/python -m tests.summary || [ $$rc -ne 0 ] || rc=1; \
	  exit $$rc

# The compose stack for real, with rootful podman (root only; tests/deploy/run.sh): sets up
# podman and a local Debian base image, builds the images, checks .dockerignore, brings
# docker-compose.yml up and drives a job through the gateway; prints a table; `down -v`.
test-deploy: venv
	PYTHON=$(BIN)/python bash tests/deploy/run.sh

# The chaos soak (README "Soak"): the whole service on its own Redis and RabbitMQ under a
# steady load, a fault every 2 minutes, every job accounted for, leaks and retention
# checked. SOAK_SECONDS (default 1800); the report goes to SOAK_REPORT_DIR (default
# .collectq/soak; `make soak SOAK_REPORT_DIR=docs` for the committed one). It starts its
# own redis-server and RabbitMQ node: it needs their binaries (`make test` installs them),
# never the shared services.
soak: venv chromium
	SOAK_REPORT_DIR=$(SOAK_REPORT_DIR) $(BIN)/python -m tests.soak

bench: venv chromium
	$(BIN)/python -m benchmarks

# 500 event streams on one API process while the submit bench runs (README "Live events")
bench-streams: venv
	$(BIN)/python -m benchmarks.streams

# The locust load test against the service on loopback (README "Load test"): 10 → 100 users
# in 80 s, where it saturates and what first; then the latency row alone (submit → collector
# start at half the end-to-end maximum). Results in benchmarks/results/.
bench-load: venv
	$(BIN)/python -m benchmarks locust
	$(BIN)/python -m benchmarks latency

# Ruff (lint and format), mypy (the packages strict; tests and benchmarks relaxed, see
# [tool.mypy] in pyproject.toml), and the layering rules between app/jobs, app/auth, app/cli,
# api, tasks, collectors and schemas (lint-imports, [tool.importlinter]). The GitHub
# workflows against GitHub's workflow schema (check-jsonschema's vendored copy: offline;
# not actionlint, docs/decisions.md "Deployment: CI/CD (issue 14)").
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache pyproject.toml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache benchmarks/results
