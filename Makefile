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
TRAIN_MODEL  ?= liver
PIPELINE     ?=
JOB_NAME     ?= odk-job
DRY_RUN      ?= 0
ENGINE       ?=
# The pipeline's parameters (run-pipeline, deploy PLATFORM=kubernetes): PARAMS="NAME=VALUE NAME2='a b'".
PARAMS       ?=
export IMAGE TAG BASE_IMAGE TRITON_MODE RUNTIME INPUT_DIR OUTPUT_DIR MODELS_DIR PIPELINE JOB_NAME DRY_RUN ENGINE
export PARAMS
# Kubernetes (docs/kubernetes.md): make deploy PLATFORM=kubernetes, make run-pipeline RUNTIME=kube.
PLATFORM      ?= clara
MANIFESTS_DIR ?=
NAMESPACE     ?= odk
KUBE_CONTEXT  ?=
KUBE_VERSION  ?= 1.34
KUBE_TRITON_IMAGE ?=
export PLATFORM MANIFESTS_DIR NAMESPACE KUBE_CONTEXT KUBE_VERSION KUBE_TRITON_IMAGE
# Results viewer (docs/viewer.md).
VIEW_PORT    ?= 8090
export VIEW_PORT
# DICOM: the local PACS (Orthanc) and the listener (see docs/dicom-listener.md). PIPELINE empty: the listener
# runs def/liver-dicom-pipeline.yml; DICOM_DESTINATION empty: the PACS of `make pacs` when it runs.
PACS_DICOM_PORT   ?= 4242
PACS_HTTP_PORT    ?= 8042
PACS_AET          ?= ORTHANC
LISTEN_AET        ?= ODK
LISTEN_PORT       ?= 11112
LISTEN_IDLE_S     ?= 5
DICOM_DESTINATION ?=
export PACS_DICOM_PORT PACS_HTTP_PORT PACS_AET LISTEN_AET LISTEN_PORT LISTEN_IDLE_S DICOM_DESTINATION

.PHONY: help venv demo test lint triton triton-stop triton-status build wrap run-local \
        validate run-pipeline deploy bench bench-report phantoms train evaluate wheel clean \
        pacs pacs-stop pacs-status listen listen-stop listen-status demo-dicom

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

deploy: $(DEV_STAMP) ## deploy PIPELINE: PLATFORM=clara (clara CLI) or kubernetes (kubectl, Argo); DRY_RUN=1 prints the commands
	@scripts/deploy.sh

bench: $(DEV_STAMP) ## performance benchmark: operator vs. the limit vs. MONAI
	@scripts/bench.sh

bench-report: $(DEV_STAMP) ## docs/benchmark.md from the last bench run (.run/bench/latest.json)
	@$(PY) -m kit.bench.page

phantoms: $(DEV_STAMP) ## regenerate the sample study in local/input (and as DICOM in local/input-dicom) and its truth
	@$(PY) -m kit.phantom sample

train: $(DEV_STAMP) ## retrain a demo model into local/models: TRAIN_MODEL=liver (default, ~20 min)|classifier|slices
	@TRAIN_MODEL=$(TRAIN_MODEL) scripts/train.sh

evaluate: $(DEV_STAMP) ## held-out accuracy of a demo model on fresh phantoms (TRAIN_MODEL=liver|classifier|slices)
	@$(PY) -m kit.train.evaluate --model $(TRAIN_MODEL)

wheel: $(DEV_STAMP) ## rebuild the vendored driver wheel in lib/
	@scripts/build-wheel.sh

pacs: $(DEV_STAMP) ## local PACS: Orthanc on PACS_DICOM_PORT/PACS_HTTP_PORT (AE PACS_AET); returns when it answers
	@scripts/pacs.sh start

pacs-stop: $(DEV_STAMP) ## stop the PACS that `make pacs` started (its studies stay in .run/pacs/db)
	@scripts/pacs.sh stop

pacs-status: $(DEV_STAMP) ## ports, web UI URL and contents of the running PACS
	@scripts/pacs.sh status

# Like the demo, the listener's jobs run the operators from the working tree (RUNTIME=host) unless RUNTIME is given.
listen: $(DEV_STAMP) ## DICOM listener (AE LISTEN_AET, LISTEN_PORT): each received study runs PIPELINE as a job
	@RUNTIME=$(if $(filter file,$(origin RUNTIME)),host,$(RUNTIME)) scripts/listen.sh start

listen-stop: $(DEV_STAMP) ## stop the listener (running jobs fail, their instances are kept)
	@scripts/listen.sh stop

listen-status: $(DEV_STAMP) ## the listener's settings and its jobs (.run/listen/jobs)
	@scripts/listen.sh status

demo-dicom: $(DEV_STAMP) ## PACS + Triton + listener, send the sample series, wait for its SEG in the PACS, stop
	@RUNTIME=$(if $(filter file,$(origin RUNTIME)),host,$(RUNTIME)) scripts/demo-dicom.sh

view: $(DEV_STAMP) ## results viewer of OUTPUT_DIR (CT from INPUT_DIR) on http://127.0.0.1:VIEW_PORT; Ctrl-C stops it
	@scripts/view.sh start

view-stop: $(DEV_STAMP) ## stop a viewer that runs in the background (recorded in .run/view)
	@scripts/view.sh stop

view-status: $(DEV_STAMP) ## URL and pid of the running viewer
	@scripts/view.sh status

.PHONY: view view-stop view-status

clean: ## remove run state and outputs (keeps .venv); refused while a server the kit started runs
	@scripts/clean.sh
