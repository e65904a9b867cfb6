# OnceOnly developer and CI entry points (GNU make).
# A fresh Debian 12 machine with only python3 and make is enough: `make test` as root installs the
# system packages the tests need, builds .venv from requirements.lock and runs the suite.

SHELL := /bin/bash
.DEFAULT_GOAL := help
# The venv must exist before anything runs in it; never build it from two recipes at once.
.NOTPARALLEL:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=
# postgresql: throwaway test servers; chromium + CJK fonts: browser tests render Chinese pages;
# python3-venv: Debian's python3 cannot create a venv without it.
SYSTEM_PACKAGES ?= postgresql chromium fonts-noto-cjk python3-venv

.PHONY: help venv install demo test lint system-deps

help:
	@echo "make install      create .venv and install requirements.lock + onceonly (editable)"
	@echo "make demo         run 'onceonly demo \$$(DEMO_ARGS)'"
	@echo "make test         run the test suite (extra options: PYTEST_ARGS=...)"
	@echo "make lint         ruff + mypy"
	@echo "make system-deps  install Debian packages the tests need (root only)"

venv install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES=python3-venv
	$(PYTHON) -m venv $(VENV)

# Re-run only when the lock or the project metadata changes, so repeated targets stay fast.
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(UV) pip install --python $(BIN)/python -r requirements.lock
	$(UV) pip install --python $(BIN)/python --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/onceonly demo $(DEMO_ARGS)

# pytest's own exit code is the result: 5 (nothing collected) fails like any other error.
test: system-deps $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests && $(BIN)/mypy

system-deps:
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: not root or no apt-get; skipping (tests expect: $(SYSTEM_PACKAGES))"; \
	  exit 0; \
	fi; \
	missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' \
	    || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "system-deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update && apt-get install -y --no-install-recommends $$missing; \
	fi
