# GlobalVoice Vapi Sync — everyday commands.
#   make demo   install into .venv, migrate, create the demo admin, start the Vapi emulator and the app
#   make test   install into .venv (and Chromium, where it can) and run the test suite
#   make lint   ruff and the import contracts (pyproject.toml)
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Django 6 needs Python 3.12+: take the newest interpreter found on PATH or under pyenv.
PYTHON ?= $(shell for c in python3.14 python3.13 python3.12 python3 $$(ls -d $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -Vr); do \
	  $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo $$c; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
EMULATOR_PORT ?= 8765

.PHONY: help install demo run test test-fast lint e2e bench figures browser soak clean

help:
	@echo "make demo    - set up and run the app (with the Vapi emulator unless .env sets VAPI_API_KEY)"
	@echo "make test    - set up and run the tests (browser tests too when Chromium is there or can be installed)"
	@echo "make lint    - ruff (pyflakes, isort, bugbear, complexity) and the import contracts, as CI runs them"
	@echo "make browser - install Debian's Chromium for the browser tests (needs apt-get and root or sudo)"
	@echo "make e2e     - production-stack suites (gunicorn, PostgreSQL, Redis, Celery)"
	@echo "make soak    - the consistency state machine with 2,000 examples (CONSISTENCY_EXAMPLES=N for more)"
	@echo "make bench   - benchmarks; figures go to bench/results.json and the README (BENCH_QUICK=1: a quick subset)"
	@echo "make figures - run make e2e, make bench and the browser test, then refresh the README's figures and screenshot"

$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12+ is required (Django 6); none found." >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --host $(HOST) --port $(PORT) --emulator-port $(EMULATOR_PORT)

# scripts/run-tests.sh installs Chromium where it can; where it cannot it says so in one line and runs
# the other tests (under CI=true that is a failure).
test: $(STAMP)
	TEST_PYTHON=$(BIN)/python bash scripts/run-tests.sh $(PYTEST_ARGS)

# Both run even if the first fails; the target fails if either did.
lint: $(STAMP)
	@rc=0; $(BIN)/ruff check . || rc=1; $(BIN)/lint-imports || rc=1; exit $$rc

browser: $(STAMP)
	bash scripts/install-browser.sh

# The consistency state machine with many more examples than CI runs (CONSISTENCY_EXAMPLES, default 2000),
# each from a fresh random seed.
soak: $(STAMP)
	CONSISTENCY_EXAMPLES=$${CONSISTENCY_EXAMPLES:-2000} CONSISTENCY_RANDOM=1 $(BIN)/python -m pytest vapisync/tests/test_consistency_machine.py -q --timeout 0 --hypothesis-show-statistics $(PYTEST_ARGS)

e2e: $(STAMP)
	$(BIN)/python -m pytest e2e $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

figures: $(STAMP)
	$(BIN)/python scripts/figures.py

clean:
	rm -rf $(VENV) .pytest_cache build db.sqlite3 demo.sqlite3 demo.sqlite3-* .env.demo
