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

.PHONY: install serve test test-fast lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

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
