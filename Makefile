# The verbs people type. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

export OMP_NUM_THREADS ?= 1

.PHONY: help venv demo train test unit integration lint format bench system-deps clean

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

system-deps:  ## service binaries the integration tests start (redis-server via apt when missing)
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi; }

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

bench: venv  ## benchmarks: training time, scoring latency and throughput (prints + bench/results/*.json)
	$(PY) -m bench.bench_core

clean:  ## remove build outputs and local artifacts (keeps data/)
	rm -rf .aws-sam artifacts bench/results .pytest_cache .mypy_cache .ruff_cache
