# The two commands a newcomer needs: `make demo` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

# Development defaults; production sets its own environment (see .env.example).
export DEBUG ?= true

# The browser SDKs the storefront tests and the demo shop load (package.json + package-lock.json).
NODE_STAMP := node_modules/.package-lock.json

.PHONY: demo test lint reliability venv services-up services-down services-status clean help

help:
	@echo "make demo   - install, start services, migrate, create admin, run web + workers + beat"
	@echo "make test   - install, start services if needed, ruff + pytest on real PostgreSQL/Redis"
	@echo "make lint   - ruff only"
	@echo "make reliability - fault checks on private PostgreSQL/Redis (kill -9, Redis/PostgreSQL restarts, schemathesis, merges, hostile input)"
	@echo "make services-up|services-down|services-status - embedded PostgreSQL/Redis by hand"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the storefront SDKs are not installed (apt-get install npm); their browser tests will skip"; fi

demo: $(STAMP) $(NODE_STAMP)
	$(PY) -m cdp.devservices run -- $(PY) -m cdp.demo

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m cdp.devservices run -- bash -c '$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) -m pytest'

# Long: about 15 minutes. Starts its own PostgreSQL, Redis, gunicorn, Celery worker and beat on free ports
# and removes them after (reliability/run.py); `make test` runs only the small versions in tests/.
reliability: $(STAMP)
	$(PY) -m reliability.run $(if $(ONLY),--only $(ONLY)) $(if $(RELIABILITY_SECONDS),--seconds $(RELIABILITY_SECONDS))

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

services-up: $(STAMP)
	$(PY) -m cdp.devservices up

services-down: $(STAMP)
	$(PY) -m cdp.devservices down

services-status: $(STAMP)
	$(PY) -m cdp.devservices status

clean: services-down
	rm -rf $(VENV) .cdp staticfiles .pytest_cache .ruff_cache node_modules
