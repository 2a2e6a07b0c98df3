# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check bench bench-cluster clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## Set everything up and run the service on http://127.0.0.1:8000 (SQLite, local models).
run: $(STAMP)
	$(BIN)/gengate serve

## Debian's Chromium, for the dashboard's browser tests: installed once when missing,
## where we may (root with apt-get, as in CI). Without it those tests are skipped, except
## with CI set, where they fail.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests" >&2; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
	      || echo "chromium could not be installed" >&2; \
	  else \
	    echo "chromium is not installed: the browser tests will be skipped" >&2; \
	  fi; }

## Set everything up and run the whole test suite (lint and types first).
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/http_api.py

## Cluster mode on PostgreSQL (127.0.0.1:5432), and PgQueuer in its own venv beside it.
bench-cluster: $(STAMP)
	$(BIN)/python benchmarks/cluster.py

clean:
	rm -rf $(VENV) gengate-data .pytest_cache .mypy_cache .ruff_cache benchmarks/.venv-pgqueuer
