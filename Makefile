# pcnets: the commands a new user runs. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PCNETS := $(VENV)/bin/pcnets
# The shared sample set sits beside the checkout in CI and on the developers' machines.
IMAGENET ?=
IMAGENET_C ?=
SMOKE ?= 0
PCNETS_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))
export PCNETS_DATA_DIR

.PHONY: setup test test-slow lint demo study reproduce-pvgg16 reproduce-peffb0 clean-venv

# The tested versions come from constraints.txt; torchattacks goes in without its declared
# dependencies (a 2020 pin of requests that it never imports; docs/dependencies.md), robustbench
# too (a pin of timm==1.0.9; docs/ecosystem.md). The test extra: the loggers and tools' tests.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,test]'
	$(PY) -m pip install -q -c constraints.txt --no-deps torchattacks robustbench
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check pcnets tests scripts
	$(VENV)/bin/ruff format --check pcnets tests scripts

# The paper's pipeline, small, offline, on CPU (CUDA when present): results/demo/REPORT.md.
demo: setup
	scripts/demo.sh

# The evidence behind the README's findings (55 minutes on a 2-core CPU): results/study/.
# Resumable stage by stage; SMOKE=1 runs every stage at tiny scale (results/study-smoke/).
study: setup
	SMOKE=$(SMOKE) scripts/study.sh

# The paper's pipeline per model on real data: make reproduce-pvgg16 IMAGENET=... IMAGENET_C=...
# SMOKE=1 runs the same stages at tiny scale with random weights (CI's check).
reproduce-pvgg16: setup
	IMAGENET=$(IMAGENET) IMAGENET_C=$(IMAGENET_C) SMOKE=$(SMOKE) scripts/reproduce.sh pvgg16

reproduce-peffb0: setup
	IMAGENET=$(IMAGENET) IMAGENET_C=$(IMAGENET_C) SMOKE=$(SMOKE) scripts/reproduce.sh peffb0

clean-venv:
	rm -rf $(VENV)
