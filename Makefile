# One entry point for developers and CI. Every target creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The stamp holds the lock's content hash, so `make setup` with an unchanged lock does nothing.
STAMP := $(VENV)/.sextant-installed
export SEXTANT_HOME ?= $(CURDIR)/.sextant

.PHONY: setup run test browser lint format bench lock clean

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

test: setup browser
	$(BIN)/python -m pytest -q -rs

# The review page's browser test drives Debian's chromium through Playwright (which never downloads
# a browser here). Installed with apt when missing: as root, or with passwordless sudo; otherwise
# say how, and let that test fail with the same instructions (it is never skipped).
CHROMIUM := chromium
APT_CHROMIUM := apt-get install -y --no-install-recommends chromium
export DEBIAN_FRONTEND := noninteractive
browser:
	@if command -v $(CHROMIUM) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian chromium for the review page's browser test"; \
		$(APT_CHROMIUM) || { apt-get update -qq && $(APT_CHROMIUM); } \
		|| echo "could not install chromium with apt: the review page's browser test will fail"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		echo "installing Debian chromium (sudo) for the review page's browser test"; \
		sudo -n env DEBIAN_FRONTEND=noninteractive $(APT_CHROMIUM) \
		|| { sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive $(APT_CHROMIUM); } \
		|| echo "could not install chromium with apt: the review page's browser test will fail"; \
	else \
		echo "chromium is missing and this user cannot install it: run 'sudo $(APT_CHROMIUM)'" \
			"(the review page's browser test fails until then)"; \
	fi

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
