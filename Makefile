# One entry point for developers and CI. Every target creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The stamp holds the lock's content hash, so `make setup` with an unchanged lock does nothing.
STAMP := $(VENV)/.sextant-installed
export SEXTANT_HOME ?= $(CURDIR)/.sextant

.PHONY: setup run test lint format bench lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" wheel
	# torch first and by exact version: a resolver left alone would pull a newer CUDA build
	$(BIN)/python -m pip install --quiet "$$(grep -E '^torch==' requirements.lock)"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: setup
	$(BIN)/sextant run

test: setup
	$(BIN)/python -m pytest -q -rs

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python -m benchmarks

# Re-resolve the lock from pyproject.toml in a throwaway venv (needs the package registry).
lock:
	rm -rf /tmp/sextant-lock && $(PYTHON) -m venv /tmp/sextant-lock
	/tmp/sextant-lock/bin/pip install --quiet --upgrade "pip>=24" wheel
	/tmp/sextant-lock/bin/pip install --quiet "torch==2.13.0"
	/tmp/sextant-lock/bin/pip install --quiet -c <(echo "torch==2.13.0") -e ".[dev]"
	{ sed -n '1,3p' requirements.lock; /tmp/sextant-lock/bin/pip freeze --exclude-editable | grep -v '^sextant'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .sextant .pytest_cache .mypy_cache .ruff_cache
