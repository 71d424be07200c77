# pcnets: the commands a new user runs. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PCNETS := $(VENV)/bin/pcnets
# The shared sample set sits beside the checkout in CI and on the developers' machines.
PCNETS_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))
export PCNETS_DATA_DIR

.PHONY: setup test test-slow lint demo reproduce-pvgg16 reproduce-peffb0 clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check pcnets tests scripts
	$(VENV)/bin/ruff format --check pcnets tests scripts

clean-venv:
	rm -rf $(VENV)
