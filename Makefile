# cnnzoo: the front door. `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REGISTRY ?= ghcr.io/example/cnnzoo
IMAGE_TAG ?= $(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/cnnzoo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

.PHONY: install
install: $(BIN)/cnnzoo ## create .venv and install cnnzoo (editable) with dev extras

.PHONY: test
test: install ## run the test suite (all tiers, including the local pipeline run)
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff over the code
	$(BIN)/ruff check cnnzoo components pipelines tests benchmarks
	$(BIN)/ruff format --check cnnzoo components pipelines tests benchmarks

.PHONY: format
format: install ## format the code with ruff
	$(BIN)/ruff format cnnzoo components pipelines tests benchmarks
	$(BIN)/ruff check --fix cnnzoo components pipelines tests benchmarks

.PHONY: clean
clean: ## remove build outputs (keeps .venv and runs/)
	rm -rf build .pytest_cache .ruff_cache
