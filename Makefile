# Vectora Inbox E2E toolkit. `make help` lists the targets. Flows chain nox sessions; nox sessions call `python -m tasks`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
NOX := $(VENV)/bin/python -m nox --non-interactive -f noxfile.py
TEMPLATE ?= lai_weekly
# Free text reaches recipes through the environment only ("$$PURPOSE"), never spliced into a command line.
export PURPOSE CLIENT_ID TEMPLATE
export UV_COMPILE_BYTECODE := 1

# The environment: one .venv with nox, the toolkit's dependencies and the test tools, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed (python3 is %s)" % sys.version.split()[0])'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -r pyproject.toml --group dev
	@touch $@

##@ Set-up
.PHONY: venv  ## build the .venv (done by every target that needs it)
venv: $(VENV)/.installed

##@ Flows
.PHONY: local-e2e  ## create a context (or rerun CLIENT_ID=...) and run the whole workflow on the embedded AWS
local-e2e: $(VENV)/.installed
	@$(NOX) -s local_e2e -- $(if $(CLIENT_ID),--client-id "$$CLIENT_ID") --template "$$TEMPLATE" $(if $(PURPOSE),--purpose "$$PURPOSE")

##@ Contexts
.PHONY: context  ## create a context alone: [TEMPLATE=lai_weekly] [PURPOSE="..."]; prints its client_id
context: $(VENV)/.installed
	@$(NOX) -s context -- new --template "$$TEMPLATE" $(if $(PURPOSE),--purpose "$$PURPOSE")

.PHONY: contexts  ## list the contexts: client_id, status, last run, purpose
contexts: $(VENV)/.installed
	@$(NOX) -s context -- list

##@ Quality
.PHONY: test  ## run the whole test suite
test: $(VENV)/.installed
	@$(NOX) -s tests

.PHONY: lint  ## run ruff (lint rules and formatting)
lint: $(VENV)/.installed
	@$(NOX) -s lint

.PHONY: help  ## list the targets
help:
	@awk 'BEGIN {FS = "##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^\.PHONY: .*##/ {split($$1, t, ": "); printf "  %-12s %s\n", t[2], $$2}' $(MAKEFILE_LIST)
