# Vectora Inbox E2E toolkit. `make help` lists the targets. Flows chain nox sessions; nox sessions run the tasks.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
NOX := $(VENV)/bin/python -m nox --non-interactive -f noxfile.py
# Every value given on make's command line reaches the task byte for byte: read with $(value ...) (never expanded:
# `$`, `$(shell ...)` stay text), handed over through the environment only ("$$PURPOSE"), never spliced into a recipe,
# and tested for emptiness in the shell. These variables count only when given on the command line: the same names in
# the shell's environment steer nothing (POSIX shells use ENV for something else; a stray CLIENT_ID would too).
MAKE_VARS := CLIENT_ID CLIENT_IDS PURPOSE TEMPLATE PAYLOAD FROM PARALLEL PORT RUNS ONLY DRY_RUN FORCE JSON PUBLISH ENV
# byte_for_byte: $1 a variable; $2 what to do when it was not given on the command line.
define byte_for_byte
ifeq ($$(origin $1),command line)
override $1 := $$(value $1)
export $1
else
$2
endif
endef
$(foreach v,$(MAKE_VARS),$(eval $(call byte_for_byte,$v,unexport $v)))
# Settings the tasks also read from the environment (README, "Settings"): the command line wins, the shell still counts.
$(foreach v,CONFIRM_PROD PYTHON,$(eval $(call byte_for_byte,$v,)))
PYTHON ?= python3
export PYTHON
# Options built in the shell from what was given: `+` passes a value given empty (refused by the task), `:+` drops it.
FLAG_CLIENT = $${CLIENT_ID+--client-id="$$CLIENT_ID"}
FLAG_ENV = $${ENV+--env="$$ENV"}
FLAG_DRY_RUN = $${DRY_RUN:+--dry-run}
FLAG_PURPOSE = $${PURPOSE+--purpose="$$PURPOSE"}
FLAG_JSON = $${JSON:+--json}
FLAG_PAYLOAD = $${PAYLOAD:+--payload="$$PAYLOAD"}
export UV_COMPILE_BYTECODE := 1
# The tasks' hints use make's syntax (`make local-e2e CLIENT_ID=...`), not nox's or python's options.
export VECTORA_INTERFACE := make

# A .venv without pip: `python3 -m venv` on Debian/Ubuntu without the python3-venv package leaves one behind.
HALF_BUILT = { echo "$(VENV) is half built (it has no pip: on Debian/Ubuntu the python3-venv package is missing): run \`sudo apt install python3-venv\`, then \`rm -rf $(VENV)\` and \`make venv\`" >&2; echo "exit 3: environment, credentials or busy" >&2; exit 3; }

# The environment: one .venv with nox, the toolkit's dependencies and the test tools, installed exactly as uv.lock
# pins them (so a clone in a year gets today's versions); rebuilt when pyproject.toml or uv.lock changes.
$(VENV)/.installed: pyproject.toml uv.lock
	@"$$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed (python3 is %s)" % sys.version.split()[0])'
	@test -x $(VENV)/bin/python || "$$PYTHON" -m venv $(VENV) || $(HALF_BUILT)
	@test -x $(VENV)/bin/uv || $(VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(HALF_BUILT)
	@test -x $(VENV)/bin/uv || $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv sync --quiet --frozen --no-install-project --group dev --python $(VENV)/bin/python
	@touch $@

# Bytecode for the toolkit's own modules, written even where PYTHONDONTWRITEBYTECODE is set: without it every
# command compiles tasks/ again (~40 ms). Python still checks each file's mtime, so a stale .pyc is never used. A file
# that does not compile is left to Python to report where it is used (a handler's syntax error is a test case).
SOURCES := noxfile.py $(wildcard tasks/*.py tasks/*/*.py lambdas/*/*.py benchmarks/*.py)
READY := __pycache__/compiled.stamp
$(READY): $(VENV)/.installed $(SOURCES)
	@$(VENV)/bin/python -m compileall -q noxfile.py tasks lambdas benchmarks >/dev/null || true
	@mkdir -p $(@D) && touch $@

##@ Set-up
.PHONY: venv  ## build the .venv and compile the toolkit (done by every target that needs it)
venv: $(READY)

##@ Flows
.PHONY: local-e2e  ## create a context (or rerun CLIENT_ID=...) and run the whole workflow on the embedded AWS: [PAYLOAD='{...}']
local-e2e: $(READY)
	@$(NOX) -s local-e2e -- $(FLAG_CLIENT) $${TEMPLATE:+--template="$$TEMPLATE"} $(FLAG_PURPOSE) $(FLAG_PAYLOAD)

.PHONY: promote  ## upload a context's config to ENV (default dev) and record it: [CLIENT_ID=...] [FORCE=1] [DRY_RUN=1]
promote: $(READY)
	@$(NOX) -s promote -- $(FLAG_CLIENT) $(FLAG_ENV) $${FORCE:+--force} $(FLAG_DRY_RUN) $(FLAG_PURPOSE)

.PHONY: aws-e2e  ## invoke ENV's three Lambdas: [CLIENT_ID=... | CLIENT_IDS="a b" [PARALLEL=4]] [PAYLOAD='{...}'] [FROM=step] [DRY_RUN=1] [PUBLISH=1] [FORCE=1]
aws-e2e: $(READY)
	@set -f; $(NOX) -s aws-e2e -- $(FLAG_CLIENT) $(FLAG_ENV) $${CLIENT_IDS:+--client-ids $$CLIENT_IDS} $${PARALLEL:+--parallel="$$PARALLEL"} $(FLAG_PAYLOAD) $${FROM:+--from="$$FROM"} $(FLAG_DRY_RUN) $${PUBLISH:+--publish} $${FORCE:+--force}

.PHONY: sfn-deploy  ## create or update ENV's Step Functions state machine (a diff first; prints its IAM): [PARALLEL=4] [DRY_RUN=1]
sfn-deploy: $(READY)
	@$(NOX) -s sfn-deploy -- $(FLAG_ENV) $${PARALLEL+--parallel="$$PARALLEL"} $(FLAG_DRY_RUN)

.PHONY: local-aws  ## serve the embedded AWS (S3, Lambda, Step Functions; every env's names) on 127.0.0.1 until Ctrl-C: [PORT=...]
local-aws: $(READY)
	@$(NOX) -s local-aws -- $${PORT:+--port="$$PORT"}

##@ Reports
.PHONY: report  ## summary of all contexts, or CLIENT_ID=...'s latest run re-rendered: [JSON=1] [ENV=... reads published runs]
report: $(READY)
	@$(NOX) -s report -- $(FLAG_CLIENT) $(FLAG_JSON) $(FLAG_ENV)

.PHONY: compare  ## side by side, the latest runs of CLIENT_IDS="lai_weekly_v11 lai_weekly_v12 ...", with deltas
compare: $(READY)
	@test -n "$$CLIENT_IDS" || { echo 'usage: make compare CLIENT_IDS="lai_weekly_v11 lai_weekly_v12"'; echo "exit 2: usage or bad input"; exit 2; }
	@set -f; $(NOX) -s compare -- $$CLIENT_IDS $(FLAG_JSON) $(FLAG_ENV)

.PHONY: recordings  ## list the recordings (LOCAL_RECORDINGS): service, age, hits in the last run; misses to fill in
recordings: $(READY)
	@$(NOX) -s recordings

##@ Single tasks
.PHONY: upload-config  ## upload CLIENT_ID's config to ENV's config bucket (diff, backup, conditional put): [DRY_RUN=1]
upload-config: $(READY)
	@test -n "$$CLIENT_ID" || { echo "usage: make upload-config CLIENT_ID=lai_weekly_vN [ENV=dev] [DRY_RUN=1]"; echo "exit 2: usage or bad input"; exit 2; }
	@$(NOX) -s upload-config -- $(FLAG_CLIENT) $(FLAG_ENV) $(FLAG_DRY_RUN)

.PHONY: rollback  ## restore what CLIENT_ID's last upload to ENV replaced
rollback: $(READY)
	@test -n "$$CLIENT_ID" || { echo "usage: make rollback CLIENT_ID=lai_weekly_vN [ENV=dev]"; echo "exit 2: usage or bad input"; exit 2; }
	@$(NOX) -s rollback -- $(FLAG_CLIENT) $(FLAG_ENV)

.PHONY: pull  ## make a context of CLIENT_ID from ENV's config bucket (a client promoted from another machine)
pull: $(READY)
	@test -n "$$CLIENT_ID" || { echo "usage: make pull CLIENT_ID=lai_weekly_vN [ENV=dev]"; echo "exit 2: usage or bad input"; exit 2; }
	@$(NOX) -s pull -- $(FLAG_CLIENT) $(FLAG_ENV)

##@ Contexts
.PHONY: new-context  ## create a context alone (uses up a client_id): [TEMPLATE=lai_weekly] [PURPOSE="..."]; prints it
new-context: $(READY)
	@$(NOX) -s new-context -- $${TEMPLATE:+--template="$$TEMPLATE"} $(FLAG_PURPOSE)

.PHONY: context  ## the old name of new-context, one typo from `contexts`: asks for confirmation first
context: $(READY)
	@if [ ! -t 0 ]; then echo "make context creates a new context; with no terminal to confirm on, run make new-context" >&2; echo "exit 2: usage or bad input" >&2; exit 2; fi; \
	read -r -p "make context creates a new context and uses up a client_id (make contexts lists them). Create one? [y/N] " answer; \
	case "$$answer" in [yY]*) $(NOX) -s new-context -- $${TEMPLATE:+--template="$$TEMPLATE"} $(FLAG_PURPOSE);; *) echo "nothing created";; esac

.PHONY: contexts  ## list the contexts: client_id, status, last run, purpose
contexts: $(READY)
	@$(NOX) -s contexts

##@ Quality
.PHONY: test  ## run the whole test suite
test: $(READY)
	@$(NOX) -s tests

.PHONY: lint  ## run ruff (lint rules and formatting) and mypy (types)
lint: $(READY)
	@$(NOX) -s lint typecheck

.PHONY: bench  ## measure the toolkit's overhead against floors, with PASS/FAIL (a few minutes): [RUNS=5] [ONLY=1,4]
bench: $(READY)
	@$(NOX) -s bench -- $${RUNS:+--runs="$$RUNS"} $${ONLY:+--only="$$ONLY"}

.PHONY: help  ## list the targets
help:
	@awk 'BEGIN {FS = "##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^\.PHONY: .*##/ {split($$1, t, ": "); name = t[2]; gsub(/ +$$/, "", name); sub(/^ +/, "", $$2); printf "  %-14s %s\n", name, $$2}' $(MAKEFILE_LIST)
