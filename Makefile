# collectq: `make run` starts the whole service, `make test` runs the suite.
PYTHON ?= python3
UV ?= $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv run test test-faults bench lint clean

$(BIN)/collectq: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

venv: $(BIN)/collectq

run: venv
	$(BIN)/collectq up

test: venv
	$(BIN)/python -m pytest --ignore=tests/faults

# Fault tests (tests/faults): they start their own redis-server and RabbitMQ node and
# break them on purpose; several minutes. Prints the table of the run.
test-faults: venv
	$(BIN)/python -m pytest tests/faults -p no:cacheprovider
	$(BIN)/python -m tests.faults.report

bench: venv
	$(BIN)/python -m benchmarks

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache benchmarks/results
