# dynaseal: everything a fresh machine needs is installed from this file.
# Needs Python >= 3.11 and Node.js >= 20 with npm.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3

.PHONY: run demo test bench lint typecheck check deps clean help

help:
	@echo "make run    - the users service on 127.0.0.1:5000 over the local stack (dynalite + a key file)"
	@echo "make demo   - walkthrough of what dynaseal stores, on the same local stack"
	@echo "make test   - the test suite (starts its own dynalite)"
	@echo "make bench  - benchmarks against the alternatives"
	@echo "make check  - lint, type check and tests"

run: deps
	$(BIN)/python -m dynaseal_users.devserver

demo: deps
	$(BIN)/python -m dynaseal.demo

test: deps
	$(BIN)/python -m pytest -q

bench: deps $(VENV)/.bench-installed
	$(BIN)/python bench/run.py

lint: deps
	$(BIN)/ruff check src tests bench

typecheck: deps
	$(BIN)/mypy

check: lint typecheck test

deps: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@py=""; for c in $(PYTHON_CANDIDATES); do \
	  if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then echo "error: dynaseal needs Python 3.11 or newer (python3.11+ not found on PATH)" >&2; exit 1; fi; \
	echo "using $$py ($$($$py --version))"; \
	[ -x $(BIN)/python ] || $$py -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	@command -v node >/dev/null 2>&1 || { echo "error: Node.js (>= 20) with npm is needed for the local DynamoDB (dynalite); install it first" >&2; exit 1; }
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is needed to install dynalite; install Node.js with npm first" >&2; exit 1; }
	@node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)' || { echo "error: Node.js >= 20 is needed (found $$(node --version))" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf .dynaseal .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
