# The commands the README gives and CI runs: keep them here so they cannot drift.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run install install-test lock env-example system-deps lint test container-smoke bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Dependencies come from the lock files only (exact versions, checked against their
# hashes); odiseo itself is installed editable on top, without resolving anything.
## install: the runtime dependencies (requirements.lock) and odiseo
install: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .

## install-test: the runtime and test dependencies (requirements-test.lock) and odiseo
install-test: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/pip install --quiet --no-deps -e . -e clients/python

## lock: resolve pyproject.toml again into both lock files (LOCK_ARGS=--upgrade for new versions)
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --generate-hashes --python-version 3.11
lock: $(BIN)/python
	$(BIN)/pip install --quiet 'uv>=0.9'
	$(UV_COMPILE) --extra test $(LOCK_ARGS) -o requirements-test.lock
	$(UV_COMPILE) -c requirements-test.lock $(LOCK_ARGS) -o requirements.lock

## env-example: rewrite .env.example from the settings (src/odiseo/config.py)
env-example: install
	$(BIN)/python -m odiseo.config_docs > .env.example

## run: install, then serve the API and a worker on the embedded default (SQLite + outbox)
run: install
	$(BIN)/odiseo run

## lint: ruff, mypy --strict on src/ and bench/, the import-layer contracts
lint: install-test
	$(BIN)/ruff check src tests bench clients
	$(BIN)/ruff format --check src tests bench clients
	$(BIN)/mypy
	$(BIN)/mypy bench
	$(BIN)/mypy --strict clients/python/src
	$(BIN)/lint-imports

## system-deps: the Debian packages the suite drives (chromium, Perl Mail::DKIM), if missing
system-deps:
	bash scripts/system-deps

## test: install, lint, then the whole suite on SQLite and PostgreSQL (TEST_DATABASE_URL)
test: system-deps lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## container-smoke: build the Dockerfile with podman from a local Debian base, run it and the compose services (root)
container-smoke: system-deps
	$(PYTHON) scripts/container-smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
