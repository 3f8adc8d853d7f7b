# Everything a fresh machine needs (Python 3.11 + make) is installed from here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# Which dagster.yaml the instance uses: the embedded default (SQLite) or deploy/postgres.
INSTANCE ?= embedded

.PHONY: install test demo dev bench lint validate clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP) dagster-home

.PHONY: dagster-home
dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@if [ "$(INSTANCE)" = "postgres" ]; then cp deploy/postgres/dagster.yaml $(DAGSTER_HOME)/dagster.yaml; \
	 else cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml; fi

test: install
	$(BIN)/python -m pytest -q
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/ruff check batch_pipelines batch_pipelines_tests benchmarks
	$(BIN)/ruff format --check batch_pipelines batch_pipelines_tests benchmarks

demo: install
	$(BIN)/batch-pipelines demo

dev: install
	$(BIN)/dagster dev -w workspace.yaml

bench: install
	$(BIN)/python -m benchmarks.run

lint: install
	$(BIN)/ruff check batch_pipelines batch_pipelines_tests benchmarks
	$(BIN)/ruff format --check batch_pipelines batch_pipelines_tests benchmarks

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

clean:
	rm -rf $(VENV) .dagster_home .data .pytest_cache .hypothesis
