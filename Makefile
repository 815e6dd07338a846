# Two commands on a fresh machine: `make demo` and `make test`. Every target installs what it needs on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
INPUT ?=
# The Hugging Face PyTorch training DLC's Python, for `make check-dlc`.
DLC_PYTHON ?= python3.12

export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help demo test synth lint deploy diff clean check-dlc

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt training_code/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed ## run the whole pipeline offline (no AWS account needed); INPUT=path.json for another input
	$(PY) -m finetune.local.demo $(if $(INPUT),--input $(INPUT))

test: $(VENV)/.installed node_modules/.installed lint ## the whole suite: lint, nag-clean synth, unit, workflow and training tests
	$(PY) -m pytest

synth: $(VENV)/.installed node_modules/.installed ## synthesize nag-checked templates into cdk.out/
	$(CDK) synth --quiet

lint: $(VENV)/.installed node_modules/.installed synth ## ruff on the code, cfn-lint on the synthesized templates
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/cfn-lint --ignore-checks W3005 -- cdk.out/*.template.json

deploy: $(VENV)/.installed node_modules/.installed ## deploy both stacks to the account of your AWS credentials
	$(CDK) deploy --all

diff: $(VENV)/.installed node_modules/.installed ## show what a deploy would change
	$(CDK) diff --all

check-dlc: $(VENV)/.installed ## after editing training_code/requirements.txt: prove it installs on the DLC, commit the record
	$(PY) -m finetune.dlc_requirements --python $(DLC_PYTHON)

clean: ## remove build outputs (keeps .venv and node_modules)
	rm -rf cdk.out build demo-out .pytest_cache .ruff_cache
