# Two commands for a newcomer: `make repro` (the experiment pipeline) and `make test`.
# Each creates .venv and installs the pinned stack on first use; later calls reuse it.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-fast lint ui server server-stop clean-venv

setup: $(STAMP)

# torch==2.13.0 is pinned in requirements.lock so pip never resolves a newer multi-GB build.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: $(STAMP)
	dvc repro

lint: $(STAMP)
	ruff check src tests pipelines

# Two workers (pytest-xdist), a file per worker at a time: many tests wait on servers and
# subprocesses, so two run in about 0.7x the serial time on 2 cores.
test: lint
	python -m pytest -n 2 --dist loadfile

# Lint and the tests not marked slow: under a minute, for the edit-test loop.
test-fast: lint
	python -m pytest -m "not slow" --durations=5

# The MLflow UI on http://127.0.0.1:5000 over the local SQLite store. MLflow 3.17's UI opens
# experiments in its GenAI mode unless the URL (or the switch, top left) says model training:
# the printed link opens the runs in model-training mode with the reader's columns.
UI_PORT ?= 5000
UI_STORE ?= sqlite:///$(CURDIR)/mlflow.db
ui: $(STAMP)
	@echo "Runs: $$(python pipelines/ui_link.py $(UI_STORE) http://127.0.0.1:$(UI_PORT))"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --host 127.0.0.1 --port $(UI_PORT) \
		--workers 1 --backend-store-uri $(UI_STORE)

# A team server: PostgreSQL + `mlflow server` with proxied artifacts, on 127.0.0.1, state in
# .server/ (scripts/server.sh). Then: MLFLOW_TRACKING_URI=http://127.0.0.1:5000 make repro
# MLFLOW_PORT=... picks another port; MLFLOW_APP=basic-auth turns on MLflow's basic auth.
server: $(STAMP)
	scripts/server.sh up

server-stop:
	scripts/server.sh down

clean-venv:
	rm -rf $(VENV)
