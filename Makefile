# The two commands the README promises, on a fresh machine: `make serve` and `make test`.
# Both create .venv and install Fathom into it on first use.

PYTHON ?= python3
VENV ?= .venv
# The offline models beside the checkout (../shared/models); CONFIG=config/default.toml downloads from the hub.
CONFIG ?= config/offline.toml

BIN := $(VENV)/bin

.PHONY: install serve test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(BIN)/fathom serve --config $(CONFIG)

lint: install
	$(BIN)/ruff check service indexers tests bench
	$(BIN)/ruff format --check service indexers tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
