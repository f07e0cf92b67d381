# Two commands a fresh machine needs: `make run` (the main job, offline) and `make test`.
# Both create .venv with Python 3.12 (pyenv's 3.12.1 via .python-version) and install the project.

PYTHON ?= $(shell command -v python3.12 2>/dev/null || echo python3)
VENV := .venv
INSTALLED := $(VENV)/.installed
RUN_ARGS ?=
SMOKE_ARGS ?=

.PHONY: install run test lint docs browser services bench airflow compose-smoke constraints clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else "Python 3.12 is needed (pandas-ta 0.4): pyenv install 3.12.1, or make PYTHON=/path/to/python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --constraint constraints.txt -e '.[test,celery,dev]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/trading-ml run $(RUN_ARGS)

test: $(INSTALLED) browser services
	$(VENV)/bin/python -m pytest

# ruff (lint and format) and mypy over trading_ml/, dags/ and plugins/ (pyproject.toml holds their settings)
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# docs/ as a site under site/ (MkDocs, Material theme); the references are generated from the code, warnings are errors
docs: $(INSTALLED)
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Debian's chromium renders the HTML report in one test; installed when missing and we are root.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) ; } || \
	  echo "chromium not installed (apt-get install chromium): the browser check of the report will be skipped"

# Debian's PostgreSQL and Redis for the CeleryExecutor test (tests/dags/test_celery_executor.py starts
# its own private servers on loopback); installed when missing and we are root, else that test is skipped.
services:
	@{ ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null ; } || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q postgresql redis-server >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q postgresql redis-server >/dev/null)) ; } || \
	  echo "PostgreSQL or redis-server not installed (apt-get install postgresql redis-server): the CeleryExecutor test will be skipped"

airflow: $(INSTALLED)
	scripts/airflow-standalone

# docker-compose.yaml built and run here: images made without a registry, the stack up, a DAG run with
# a worker killed, then down -v, and the same run on make airflow beside it (scripts/compose-smoke; root,
# or a Docker engine DOCKER_HOST reaches). SMOKE_ARGS=--no-compare skips make airflow (CI does).
compose-smoke: $(INSTALLED)
	$(VENV)/bin/python scripts/compose-smoke $(SMOKE_ARGS)

bench: $(INSTALLED)
	$(VENV)/bin/python benchmarks/bench_ingest.py
	$(VENV)/bin/python benchmarks/bench_features.py
	$(VENV)/bin/python benchmarks/bench_pipeline.py
	$(VENV)/bin/python benchmarks/bench_airflow.py
	$(VENV)/bin/python benchmarks/bench_api.py
	$(VENV)/bin/python benchmarks/bench_gate.py
	$(VENV)/bin/python benchmarks/bench_scale.py

# constraints.txt from the tested environment (after a change of pins in pyproject.toml and a green `make test`)
constraints: $(INSTALLED)
	{ sed -n '1,3p' constraints.txt; $(VENV)/bin/pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) data .airflow
