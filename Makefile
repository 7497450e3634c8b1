# Two entry points, both from a fresh clone (see README):
#   make app   - install, ingest the seed corpus, open the web app on http://127.0.0.1:7860
#   make test  - install (with dev extras) and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: app test install lint

$(BIN)/activate:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first and pinned: this machine holds its CPU wheel; any other spec pulls GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

app: install
	$(BIN)/assistant ingest
	$(BIN)/assistant ui

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
