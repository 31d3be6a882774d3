# EventFlow: `make run` starts everything, `make test` runs the whole suite.
# Both need only Python 3.11; they create .venv and install the pinned requirements.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3.11)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# Extra arguments for pytest, e.g. make test ARGS="-k intake -x"
ARGS ?=

.PHONY: run test lint typecheck check security manage bench bench-ingest bench-process bench-consume bench-scale install install-dev clean clean-data

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "EventFlow needs Python 3.11 or newer; found '$(PYTHON)'. Run: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { \
		echo "Could not create $(VENV). On Debian or Ubuntu: apt-get install python3-venv (or python3.11-venv)"; rm -rf $(VENV); exit 1; }
	$(PIP) install --quiet --upgrade pip

$(RUN_STAMP): requirements.txt | $(PY)
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(PY) -m launcher up

test: $(DEV_STAMP)
	$(PY) -m launcher test $(ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy .

check: lint typecheck test

# CI's security checks (docs/SECURITY.md); ruff's security rules run with `make lint`.
security: $(DEV_STAMP)
	$(VENV)/bin/bandit -c pyproject.toml -r . --severity-level medium --quiet
	$(PY) .ci/security.py secrets
	$(PY) .ci/security.py pip-audit

# A management command with the servers it needs: make manage ARGS="create_stream shop"
manage: $(RUN_STAMP)
	@$(PY) -m launcher.devservices $(PY) manage.py $(ARGS)

bench: bench-ingest bench-process bench-consume

bench-ingest: $(DEV_STAMP)
	$(PY) -m launcher.devservices $(PY) bench/ingest.py

bench-process: $(DEV_STAMP)
	$(PY) -m launcher.devservices $(PY) bench/process.py

bench-consume: $(DEV_STAMP)
	$(PY) -m launcher.devservices $(PY) bench/consume.py

# Processing with 1, 2 and 4 worker processes over 1, 4 and 16 streams (docs/SCALING.md, Capacity model).
bench-scale: $(DEV_STAMP)
	$(PY) -m launcher.devservices $(PY) bench/scale.py

# Tools and caches only; the data of the embedded servers stays.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Deletes the embedded PostgreSQL data, the demo key and collected static files.
clean-data:
	@if pgrep -f -- "-D $(CURDIR)/.eventflow/pgdata" >/dev/null 2>&1; then \
		echo "The embedded PostgreSQL of this checkout is running; stop make run / make test first."; exit 1; fi
	rm -rf .eventflow
