# The two commands a new user needs: `make demo` and `make test`. Both set up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/default.toml
export PYTHONHASHSEED := 0

.PHONY: setup demo test test-fast lint bench clean lock

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "edgecache needs Python 3.11: run make PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: setup
	$(BIN)/edgecache run --config $(CONFIG)

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	luacheck edge_nodes/cache/lua

# Every benchmark, ratios vs same-run baselines -> bench.json, benchmarks/out/bench.md (< 20 min on
# 2 cores). make bench BENCH_ARGS=--quick (a few minutes), BENCH_ARGS='--only features,replay', or
# BENCH_ARGS=--scale-16m (the Spark job at 16M events too: about 5.5 more minutes).
bench: setup
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Re-pin after changing dependencies in pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -e '.[dev]'
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^edgecache' > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
