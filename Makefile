# Operator Development Kit — every target works from a fresh clone (it creates .venv itself).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV       ?= .venv
PY         := $(VENV)/bin/python
DEV_STAMP  := $(VENV)/.installed-requirements-dev.txt

# Outside contract (see README): override on the command line, e.g. `make build TAG=0.2.0`.
IMAGE        ?= clara/simple-operator
TAG          ?= 0.1.0
BASE_IMAGE   ?=
TRITON_MODE  ?= auto
RUNTIME      ?= auto
INPUT_DIR    ?= local/input
OUTPUT_DIR   ?= local/output
MODELS_DIR   ?= local/models
PIPELINE     ?=
JOB_NAME     ?= odk-job
DRY_RUN      ?= 0
ENGINE       ?=
export IMAGE TAG BASE_IMAGE TRITON_MODE RUNTIME INPUT_DIR OUTPUT_DIR MODELS_DIR PIPELINE JOB_NAME DRY_RUN ENGINE

.PHONY: help venv demo test lint triton triton-stop triton-status build wrap run-local \
        validate run-pipeline deploy bench phantoms train evaluate wheel clean

help: ## one line per target
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(DEV_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@scripts/venv.sh $(VENV) requirements-dev.txt

venv: $(DEV_STAMP) ## create/update .venv from the pinned requirements

# The demo runs the operator from the working tree (RUNTIME=host) unless RUNTIME is given: an operator image
# built earlier may hold older code.
demo: $(DEV_STAMP) ## Triton + operator on INPUT_DIR -> OUTPUT_DIR, then stop; prints where results are
	@RUNTIME=$(if $(filter file,$(origin RUNTIME)),host,$(RUNTIME)) scripts/demo.sh

test: $(DEV_STAMP) ## the whole test suite (lint included)
	@scripts/test.sh

lint: $(DEV_STAMP) ## ruff, shellcheck, hadolint
	@scripts/lint.sh

triton: $(DEV_STAMP) ## start Triton on MODELS_DIR (TRITON_MODE=auto|container|embedded); returns when ready
	@scripts/triton.sh start

triton-stop: $(DEV_STAMP) ## stop the Triton that `make triton` started
	@scripts/triton.sh stop

triton-status: $(DEV_STAMP) ## mode, URLs, models and readiness of the running Triton
	@scripts/triton.sh status

build: $(DEV_STAMP) ## build the operator image IMAGE:TAG from Dockerfile
	@scripts/build.sh

wrap: $(DEV_STAMP) ## layer the operator onto BASE_IMAGE=<inference image> (Dockerfile.wrap)
	@scripts/wrap.sh

run-local: $(DEV_STAMP) ## run the operator on INPUT_DIR -> OUTPUT_DIR (RUNTIME=auto|container|host), env.list applied
	@scripts/run-local.sh

validate: $(DEV_STAMP) ## check every pipeline in def/ (or PIPELINE=file)
	@scripts/validate.sh

run-pipeline: $(DEV_STAMP) ## run a whole PIPELINE locally on INPUT_DIR -> OUTPUT_DIR
	@scripts/run-pipeline.sh

deploy: $(DEV_STAMP) ## deploy PIPELINE to a Clara cluster with the clara CLI (DRY_RUN=1 prints the commands)
	@scripts/deploy.sh

bench: $(DEV_STAMP) ## performance benchmark: operator vs. the limit vs. MONAI
	@scripts/bench.sh

bench-report: $(DEV_STAMP) ## docs/benchmark.md from the last bench run (.run/bench/latest.json)
	@$(PY) -m kit.bench.page

phantoms: $(DEV_STAMP) ## regenerate the sample study in local/input and its truth
	@$(PY) -m kit.phantom sample

train: $(DEV_STAMP) ## retrain the demo model and export local/models (CPU, ~20 min)
	@scripts/train.sh

evaluate: $(DEV_STAMP) ## held-out Dice of the demo model on fresh phantoms
	@$(PY) -m kit.train.evaluate

wheel: $(DEV_STAMP) ## rebuild the vendored driver wheel in lib/
	@scripts/build-wheel.sh

clean: ## remove run state and outputs (keeps .venv)
	rm -rf .run local/output/*
	@touch local/output/.gitkeep
