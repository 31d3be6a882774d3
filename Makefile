# EventFlow: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench bench-ingest bench-process bench-consume install clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m eventflow up

test: $(STAMP)
	$(PY) -m eventflow test

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy .

bench: bench-ingest bench-process bench-consume

bench-ingest: $(STAMP)
	$(PY) -m eventflow.devservices $(PY) bench/ingest.py

bench-process: $(STAMP)
	$(PY) -m eventflow.devservices $(PY) bench/process.py

bench-consume: $(STAMP)
	$(PY) -m eventflow.devservices $(PY) bench/consume.py

clean:
	rm -rf $(VENV) .eventflow .pytest_cache .mypy_cache .ruff_cache
