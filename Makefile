# The two commands the README promises, on a fresh machine: `make serve` and `make test`.
# Both create .venv and install Fathom into it on first use.

PYTHON ?= python3
VENV ?= .venv
# The overlay laid over the packaged defaults: $FATHOM_CONFIG if set, else the offline models beside the
# checkout (../shared/models). `make serve CONFIG=` serves the defaults alone, downloading models from the hub.
CONFIG ?= $(or $(FATHOM_CONFIG),config/offline.toml)
# Empty: [server] port of the configuration (8000 by default).
PORT ?=

BIN := $(VENV)/bin

# What gets installed is locked, hashes included: requirements.lock is what Fathom needs at run time (the
# wheel smoke test and the container install it), requirements-dev.lock adds the tools and clients the
# tests use, pinned to the same versions. pyproject.toml keeps ranges for people who install Fathom as a
# library. `make lock` after editing pyproject.toml; `make upgrade` to move to the newest allowed versions.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
# The build backend and pip are locked too: Fathom itself is installed without build isolation.
BUILD_TOOLS := 'setuptools>=77' pip
COMPILE = printf '%s\n' $(BUILD_TOOLS) | UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes pyproject.toml -

.PHONY: install serve test test-fast lint lock upgrade

# A fresh .venv whenever the lock changes, so it holds exactly what the lock names and nothing else.
$(VENV)/.installed: pyproject.toml $(LOCK) $(DEV_LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

# Both locks from pyproject.toml, keeping the pinned versions where the ranges still allow them.
lock: install
	$(COMPILE) -o $(LOCK) $(UPGRADE)
	$(COMPILE) --extra dev -c $(LOCK) -o $(DEV_LOCK) $(UPGRADE)
	$(MAKE) install

# The newest versions pyproject.toml allows, then the whole suite on them: an upgrade is a change of its
# own, and its failures land there.
upgrade:
	$(MAKE) lock UPGRADE=--upgrade
	$(MAKE) test

serve: install
	$(BIN)/fathom serve $(if $(CONFIG),--config $(CONFIG)) $(if $(PORT),--port $(PORT))

lint: install
	$(BIN)/ruff check service indexers tests bench
	$(BIN)/ruff format --check service indexers tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# While changing code: lint, the unit tests and the HTTP API tests on the embedded default (Tantivy,
# Qdrant local, the offline models), Elasticsearch and Qdrant servers left out even when configured.
# A few minutes on 2 cores, against about 20 for `make test`.
FAST_TESTS = tests/unit $(wildcard tests/integration/test_*_api.py) tests/integration/test_openapi.py \
	tests/integration/test_rerank_clients.py
test-fast: lint
	env -u FATHOM_TEST_ELASTICSEARCH_URL -u FATHOM_TEST_QDRANT_URL $(BIN)/pytest $(FAST_TESTS)
