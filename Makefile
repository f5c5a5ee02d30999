# collectq: `make run` starts the whole service, `make test` runs the suite.
PYTHON ?= python3
UV ?= $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

CHROMIUM ?= /usr/bin/chromium

.PHONY: venv chromium run test test-faults bench lint clean

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

# Everything, then the fault tests (about 4.5 minutes) in a run of their own, then their
# table. Separate runs: tests that build time-bound data at collection time (JWT claims)
# must not wait minutes behind the fault scenarios.
test: venv chromium
	$(BIN)/python -m pytest --ignore=tests/faults
	$(BIN)/python -m pytest tests/faults
	$(BIN)/python -m tests.faults.report

# Only the fault tests (tests/faults): they start their own redis-server and RabbitMQ
# node and break them, and real workers, on purpose. Prints the table of the run.
test-faults: venv
	$(BIN)/python -m pytest tests/faults
	$(BIN)/python -m tests.faults.report

bench: venv chromium
	$(BIN)/python -m benchmarks

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache benchmarks/results
