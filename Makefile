# The verbs people type. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# AWS SAM CLI lives in its own venv: its pins must not fight the project's.
SAM_VENV  ?= .venv-sam
# Pinned: `make sam-api` patches SAM's container creation (infra/fraud_devstack/sam_local.py).
SAM_CLI_VERSION := 1.170.0
SAM       := $(SAM_VENV)/bin/sam
CFN_LINT  := $(SAM_VENV)/bin/cfn-lint
# `sam build` (no container) needs the Lambda runtime's Python on PATH; pyenv provides it here.
LAMBDA_PYTHON ?= python3.13
PYENV_VERSIONS := $(shell ls $${PYENV_ROOT:-$$HOME/.pyenv}/versions 2>/dev/null | grep -E '^3\.(11|13)\.' | tr '\n' ':' | sed 's/:$$//')
ifneq ($(PYENV_VERSIONS),)
export PYENV_VERSION := $(PYENV_VERSIONS)
endif

export OMP_NUM_THREADS ?= 1

.PHONY: help venv demo loop-demo retrain-source train api stack stack-down stack-status produce runner localstack-venv reliability test unit integration lint format bench bench-api bench-cold soak system-deps docker-deps sam-venv validate build sam-api sam-invoke sam-down clean

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

loop-demo: venv system-deps  ## the retraining loop on a simulated drift through the local stack (redis, tansu, runner per policy): replay → monitor → retrain → shadow → gate
	$(PY) -m fraud_devstack.loop_demo --stack

retrain-source:  ## upload `git archive HEAD` as the retraining job's source (STACK=fraud-detection-prod)
	git archive --format=zip HEAD | aws s3 cp - "$$(aws cloudformation describe-stacks --stack-name $(or $(STACK),fraud-detection-prod) --query "Stacks[0].Outputs[?OutputKey=='RetrainSourceUri'].OutputValue" --output text)"

train: venv  ## train on data/creditcard.csv (the real Kaggle file) into the local registry
	$(PY) -m fraud_training.train --data data/creditcard.csv

api: venv  ## serve the HTTP API (and the analyst console at /console) on 127.0.0.1:8000 in the background; uses the local stack
	$(PY) -m fraud_devstack.api --background

stack: venv system-deps  ## start redis-server (6379), tansu/Kafka (9092), moto_server/S3 (4566); bucket, topics
	$(PY) -m fraud_devstack.stack up

stack-down: venv  ## stop exactly what `make stack` started
	$(PY) -m fraud_devstack.stack down

stack-status: venv  ## what the local stack runs, on which ports
	$(PY) -m fraud_devstack.stack status

produce: venv  ## send data/kaggle_like.csv (or CSV=...) to the stack's `transactions` topic
	$(PY) -m fraud_devstack.producer --csv $${CSV:-data/kaggle_like.csv} --limit $${LIMIT:-20}

runner: venv  ## the local event-source runner: consume `transactions` into the stream handler
	$(PY) -m fraud_devstack.local_runner --idle-exit $${IDLE:-10}

system-deps:  ## service binaries the integration tests start (redis-server, wrk, chromium via apt when missing)
	@missing=""; command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; fi
	@$(MAKE) --no-print-directory docker-deps

docker-deps:  ## dockerd and debootstrap for `sam local` without your own Docker (apt, when missing)
	@missing=""; command -v dockerd >/dev/null 2>&1 || missing="$$missing docker.io"; \
	command -v debootstrap >/dev/null 2>&1 || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

$(SAM_VENV)/.installed-sam-$(SAM_CLI_VERSION):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet "aws-sam-cli==$(SAM_CLI_VERSION)" cfn-lint
	touch $@

sam-venv: $(SAM_VENV)/.installed-sam-$(SAM_CLI_VERSION)  ## AWS SAM CLI (pinned) and cfn-lint in their own venv

validate: sam-venv  ## sam validate --lint and cfn-lint on template.yaml
	$(SAM) validate --lint
	$(CFN_LINT) template.yaml

build: validate  ## sam build (no container) + the runtime's boto3 for the built-artifact tests
	@command -v $(LAMBDA_PYTHON) >/dev/null || { echo "$(LAMBDA_PYTHON) is needed for sam build"; exit 1; }
	$(SAM) build
	$(LAMBDA_PYTHON) -m pip install --quiet --upgrade --target .aws-sam/runtime-deps boto3

sam-api: venv sam-venv docker-deps  ## sam local start-api on 127.0.0.1:3000 over the built template (needs `make stack` and `make build`)
	$(PY) -m fraud_devstack.sam_dev api

sam-invoke: venv sam-venv docker-deps  ## sam local invoke: StreamFunction (events/kafka-msk.json), ApiFunction (events/apigw-v2-predict.json)
	$(PY) -m fraud_devstack.sam_dev invoke

sam-down: venv  ## stop exactly what sam-api/sam-invoke started: sam, its containers, the private Docker daemon
	$(PY) -m fraud_devstack.sam_dev down

LOCALSTACK_VENV ?= .venv-localstack

$(LOCALSTACK_VENV)/.installed-stamp:
	$(LAMBDA_PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/pip install --quiet "localstack-core[runtime]" "cbor2<6" "pyopenssl==25.3.0" service_identity
	touch $@

localstack-venv: $(LOCALSTACK_VENV)/.installed-stamp  ## LocalStack (S3 + CloudFormation) on the host, Python 3.13, no Docker

test: venv system-deps lint build  ## lint, validate + build the template, then every test (unit + integration)
	-@$(MAKE) --no-print-directory localstack-venv || echo "LocalStack could not be installed: its optional test will be skipped"
	FRAUD_REQUIRE_BUILT=1 $(PY) -m pytest

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
	$(PY) -m bench.bench_stream
	$(PY) -m bench.bench_monitor

reliability: venv system-deps  ## the reliability suite at full size (CI runs it reduced); prints + writes a report table
	FRAUD_RELIABILITY_SCALE=full $(PY) -m pytest tests/reliability -v

soak: venv system-deps  ## 30-min soak of producer → broker → runner → Redis (MINUTES=30 RATE=2000); docs/soak.{png,md}
	$(PY) -m fraud_devstack.soak --minutes $(or $(MINUTES),30) --rate $(or $(RATE),2000) --out docs

bench-cold: venv build  ## cold-init of the built handlers vs the classic sklearn stack, and artifact sizes
	$(PY) -m bench.bench_cold_start

bench-ab: venv system-deps  ## paired A/B of the stream handler: make bench-ab A=<rev> [B=<rev>] (B: working tree)
	$(PY) -m bench.ab_stream $(A) $(B)

bench-api: venv system-deps  ## HTTP benchmark only: /predict via uvicorn + wrk, Mangum in-process
	$(PY) -m bench.bench_api

clean:  ## remove build outputs and local artifacts (keeps data/)
	rm -rf .aws-sam artifacts bench/results .pytest_cache .mypy_cache .ruff_cache
