# Two commands on a fresh machine: `make demo` and `make test`. Every target installs what it needs on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# checkov's dependencies conflict with the pinned test packages: it lives in a venv of its own.
CHECKOV_VENV := .venv-checkov
CDK := node_modules/.bin/cdk
INPUT ?=
# The deployed fine-tuning stack (config.stack_name: resource_prefix in CamelCase); `finetune` finds its outputs.
STACK ?= Finetune
# The Hugging Face PyTorch training DLC's Python, for `make check-dlc`.
DLC_PYTHON ?= python3.12

export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help demo test test-fast synth lint typecheck deploy diff destroy upload-mini upload-banking77 clean check-dlc

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt training_code/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed ## run the whole pipeline offline (no AWS account needed); INPUT=path.json for another input, DATA=dir for your own train/test.jsonl, RUNS=2 to see calibration
	$(PY) -m finetune.local.demo $(if $(INPUT),--input $(INPUT)) $(if $(DATA),--data $(DATA)) $(if $(RUNS),--runs $(RUNS))

# Every core, one test file per worker (a file's module fixtures, e.g. a trained tiny model, are built once).
PYTEST_PARALLEL := -n auto --dist loadfile

test: $(VENV)/.installed node_modules/.installed lint ## the whole suite: lint, nag-clean synth, unit, workflow and training tests
	$(PY) -m pytest $(PYTEST_PARALLEL)

test-fast: $(VENV)/.installed ## unit and contract tests only (no training, workflow runs, demo or fuzz): about a minute
	$(PY) -m pytest -m "not slow" $(PYTEST_PARALLEL)

synth: $(VENV)/.installed node_modules/.installed ## synthesize nag-checked templates into cdk.out/
	$(CDK) synth --quiet

lint: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed synth typecheck ## ruff, mypy; cfn-lint and checkov on the templates (skips: lint-skips.toml)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/cfn-lint --format json --non-zero-exit-code none -- cdk.out/*.template.json > cdk.out/cfn-lint.json
	$(PY) .ci/lint_skips.py cfn-lint cdk.out/cfn-lint.json
	$(CHECKOV_VENV)/bin/checkov --skip-download --framework cloudformation --soft-fail --quiet -o json \
		-d cdk.out > cdk.out/checkov.json
	$(PY) .ci/lint_skips.py checkov cdk.out/checkov.json

# mypy over lambdas, stacks, finetune and training_code (pyproject.toml [tool.mypy]); its cache is .mypy_cache.
typecheck: $(VENV)/.installed ## mypy over the code that deploys and the CLI
	$(PY) -m mypy

deploy: $(VENV)/.installed node_modules/.installed ## deploy both stacks to the account of your AWS credentials
	$(CDK) deploy --all

diff: $(VENV)/.installed node_modules/.installed ## show what a deploy would change
	$(CDK) diff --all

destroy: $(VENV)/.installed node_modules/.installed ## delete both stacks (retained data stays: README, Teardown)
	$(CDK) destroy --all

upload-mini: $(VENV)/.installed ## upload examples/datasets/banking77-mini (examples/smoke.json) to the deployed stack's bucket
	$(VENV)/bin/finetune --stack $(STACK) data banking77-mini

upload-banking77: $(VENV)/.installed ## download Banking77 from the Hugging Face Hub and upload it to the deployed stack's bucket
	$(VENV)/bin/finetune --stack $(STACK) data banking77

check-dlc: $(VENV)/.installed ## after editing training_code/requirements.txt: prove it installs on the DLC, commit the record
	$(PY) -m finetune.dlc_requirements --python $(DLC_PYTHON)

clean: ## remove build outputs (keeps .venv and node_modules)
	rm -rf cdk.out build demo-out .pytest_cache .ruff_cache .mypy_cache
