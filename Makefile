# The verbs people type. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

export OMP_NUM_THREADS ?= 1

.PHONY: help venv demo train api test unit integration lint format bench bench-api system-deps clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with everything (serving, training, dev)

demo: venv  ## the main job end to end on embedded defaults: data → train → registry → score
	$(PY) -m fraud_devstack.demo

train: venv  ## train on data/creditcard.csv (the real Kaggle file) into the local registry
	$(PY) -m fraud_training.train --data data/creditcard.csv

api: venv  ## serve the HTTP API on 127.0.0.1:8000 with uvicorn (the no-Docker `sam local start-api`)
	$(VENV)/bin/uvicorn fraud_api.main:app --host 127.0.0.1 --port 8000 --lifespan off

system-deps:  ## service binaries the integration tests start (redis-server via apt when missing)
	@missing=""; command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; fi

test: venv system-deps lint  ## lint, then every test (unit + integration on real local services)
	$(PY) -m pytest

unit: venv  ## unit tests only (no sockets)
	$(PY) -m pytest tests/unit

integration: venv system-deps  ## integration tests only (real S3 endpoint, Redis, Kafka broker)
	$(PY) -m pytest tests/integration

lint: venv  ## ruff (lint + format check) and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: venv  ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: venv system-deps  ## benchmarks: training, scoring core, HTTP (prints tables, writes bench/results/*.json)
	$(PY) -m bench.bench_core
	$(PY) -m bench.bench_api

bench-api: venv system-deps  ## HTTP benchmark only: /predict via uvicorn + wrk, Mangum in-process
	$(PY) -m bench.bench_api

clean:  ## remove build outputs and local artifacts (keeps data/)
	rm -rf .aws-sam artifacts bench/results .pytest_cache .mypy_cache .ruff_cache
