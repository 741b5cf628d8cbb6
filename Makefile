# The commands the README gives and CI runs: keep them here so they cannot drift.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run install install-test system-deps lint test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

## run: install, then serve the API and a worker on the embedded default (SQLite + outbox)
run: install
	$(BIN)/odiseo run

## lint: ruff, mypy --strict on src/, the import-layer contracts
lint: install-test
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

## system-deps: the Debian packages the suite drives (chromium, Perl Mail::DKIM), if missing
system-deps:
	bash scripts/system-deps

## test: install, lint, then the whole suite on SQLite and PostgreSQL (TEST_DATABASE_URL)
test: system-deps lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
