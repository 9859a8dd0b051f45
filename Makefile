# Two entry points, both doing their own set-up on a fresh machine (Python 3.11+ and Node.js present):
#   make migrate  - install, start the embedded PostgreSQL 16, apply all migrations, print the status
#   make test     - install what the tests need, lint, then run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: migrate test lint check

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

migrate: $(VENV)/.installed
	$(PY) -m lambda_db_setup up
	$(PY) -m lambda_db_setup status

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(VENV)/.installed node_modules/.installed lint
	$(PY) -m pytest -n 2
