# Everything a fresh machine needs (Python 3.11 + make) is installed from here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# Which dagster.yaml the instance uses: deploy/embedded (SQLite) or deploy/postgres.
INSTANCE ?= embedded
# Where `make dev` serves the UI. Run links (run metadata, Teams cards, CLI hints) are built
# from BATCH_PIPELINES_UI_URL, derived from these unless set (e.g. behind a proxy).
HOST ?= 127.0.0.1
PORT ?= 3000
export BATCH_PIPELINES_UI_URL ?= http://$(HOST):$(PORT)

.PHONY: install test demo dev bench lint validate clean clean-data

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP) dagster-home

# Copies deploy/$(INSTANCE)/dagster.yaml to $(DAGSTER_HOME); a missing setting (e.g.
# DAGSTER_POSTGRES_URL) is one line naming it.
.PHONY: dagster-home
dagster-home:
	@$(BIN)/python -m batch_pipelines.instance $(INSTANCE)

test: install
	$(BIN)/python -m pytest -q
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/ruff check batch_pipelines batch_pipelines_tests benchmarks
	$(BIN)/ruff format --check batch_pipelines batch_pipelines_tests benchmarks

demo: install
	$(BIN)/batch-pipelines demo

# `dagster dev` still works in Dagster 1.13 and needs no second CLI; its notice that `dg dev`
# supersedes it is hidden so the first screen shows only what concerns this project.
dev: install
	$(BIN)/python -W 'ignore:Function `dev_command` is superseded' -m dagster dev \
	  -w workspace.yaml -h $(HOST) -p $(PORT)

bench: install
	$(BIN)/python -m benchmarks.run

lint: install
	$(BIN)/ruff check batch_pipelines batch_pipelines_tests benchmarks
	$(BIN)/ruff format --check batch_pipelines batch_pipelines_tests benchmarks

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

clean:
	rm -rf $(VENV) .dagster_home .data .pytest_cache .hypothesis

# The embedded store, drop folders and Dagster instance, e.g. before `make demo` again.
clean-data:
	rm -rf .dagster_home .data
