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
# make run-local OPERATOR=<name>: the operator app/<name>.py (python -u -m app.<name>) with env/<name>.list;
# empty: the segmentation operator (python -u -m app) with env.list.
OPERATOR     ?=
export IMAGE TAG BASE_IMAGE TRITON_MODE RUNTIME INPUT_DIR OUTPUT_DIR MODELS_DIR PIPELINE JOB_NAME DRY_RUN ENGINE
export PARAMS OPERATOR
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
VIEW_HOST    ?=
export VIEW_PORT VIEW_HOST
# DICOM: the local PACS (Orthanc) and the listener (see docs/dicom-listener.md). PIPELINE empty: the listener
# runs def/liver-dicom-pipeline.yml; DICOM_DESTINATION empty: the PACS of `make pacs` when it runs.
PACS_DICOM_PORT   ?= 4242
PACS_HTTP_PORT    ?= 8042
PACS_AET          ?= ORTHANC
LISTEN_AET        ?= ODK
LISTEN_PORT       ?= 11112
LISTEN_IDLE_S     ?= 5
DICOM_DESTINATION ?=
# The calling AE titles the PACS accepts besides the listener's (dcmtk's defaults; AET[@host[:port]], comma-separated).
PACS_ALLOWED_AETS ?= STORESCU,FINDSCU,ECHOSCU
# The listener's limits (docs/dicom-listener.md, "Limits"): associations at once, of them per calling AE title,
# TCP connections at once, timeouts in seconds, and the free space below which stores are refused.
LISTEN_MAX_ASSOCIATIONS  ?= 16
LISTEN_MAX_PER_CALLER    ?= 4
LISTEN_MAX_CONNECTIONS   ?= 64
LISTEN_ACSE_TIMEOUT_S    ?= 10
LISTEN_DIMSE_TIMEOUT_S   ?= 30
LISTEN_NETWORK_TIMEOUT_S ?= 30
LISTEN_MIN_FREE_MB       ?= 100
export PACS_DICOM_PORT PACS_HTTP_PORT PACS_AET LISTEN_AET LISTEN_PORT LISTEN_IDLE_S DICOM_DESTINATION PACS_ALLOWED_AETS
export LISTEN_MAX_ASSOCIATIONS LISTEN_MAX_PER_CALLER LISTEN_MAX_CONNECTIONS LISTEN_ACSE_TIMEOUT_S \
       LISTEN_DIMSE_TIMEOUT_S LISTEN_NETWORK_TIMEOUT_S LISTEN_MIN_FREE_MB

.PHONY: help venv demo test lint triton triton-stop triton-status build wrap run-local \
        validate run-pipeline deploy bench bench-report phantoms train evaluate wheel clean \
        pacs pacs-stop pacs-status listen listen-stop listen-status listen-retry listen-resend listen-discard \
        listen-prune demo-dicom new-operator model-config import-bundle

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

# A model entry in MODELS_DIR written from the model itself (docs/own-model.md); MODEL, NAME, INPUT_DIMS,
# SPACING_MM, HU_WINDOW, LABELS, LABEL_NESTING, OUTPUT_ACTIVATION, MAX_BATCH_SIZE, BUNDLE, ALLOW_UNSUPPORTED, FORMAT
# are read from the command line.
model-config: $(DEV_STAMP) ## MODELS_DIR/NAME from MODEL=file.onnx|.pt (INPUT_DIMS, SPACING_MM, HU_WINDOW, LABELS)
	@scripts/model-entry.sh config

import-bundle: $(DEV_STAMP) ## MODELS_DIR/NAME from a MONAI BUNDLE=folder (its metadata.json and inference.json)
	@scripts/model-entry.sh bundle

build: $(DEV_STAMP) ## build the operator image IMAGE:TAG from Dockerfile
	@scripts/build.sh

wrap: $(DEV_STAMP) ## layer the operator onto BASE_IMAGE=<inference image> (Dockerfile.wrap)
	@scripts/wrap.sh

run-local: $(DEV_STAMP) ## run the operator (or OPERATOR=<name>) on INPUT_DIR -> OUTPUT_DIR (RUNTIME=auto|container|host), env.list applied
	@scripts/run-local.sh

new-operator: $(DEV_STAMP) ## a runnable operator skeleton: NAME=<name> [KIND=segmentation|classification|passthrough]
	@scripts/new-operator.sh

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

listen-stop: $(DEV_STAMP) ## stop the listener: port closed, open associations aborted, running jobs ended (kept)
	@scripts/listen.sh stop

listen-status: $(DEV_STAMP) ## the listener's settings and its jobs (.run/listen/jobs)
	@scripts/listen.sh status

listen-retry: $(DEV_STAMP) ## JOB=<job>: run a failed, delivery-failed or incomplete job again from its kept instances
	@scripts/listen.sh retry

listen-resend: $(DEV_STAMP) ## JOB=<job>: send a job's kept results again (register-results alone)
	@scripts/listen.sh resend

listen-discard: $(DEV_STAMP) ## JOB=<job>: remove a job's folder (refuses one that runs)
	@scripts/listen.sh discard

listen-prune: $(DEV_STAMP) ## remove settled jobs older than LISTEN_KEEP_DAYS (7; 0: keep forever)
	@scripts/listen.sh prune

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
