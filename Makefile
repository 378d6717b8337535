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

.PHONY: install serve test lint

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
