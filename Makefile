# Two entry points, both from a fresh clone (see README):
#   make app   - install, ingest the seed corpus, open the web app on http://127.0.0.1:7860
#   make test  - install (with dev extras and Debian's chromium for the browser test) and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: app test install lint chromium rebuild-llama

$(BIN)/activate:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first and pinned: this machine holds its CPU wheel; any other spec pulls GBs of CUDA packages.
# llama.cpp second, compiled for this CPU without the AMX kernels that crash (README "CPU support"): the wheel is
# kept per CPU, flags and version, never taken from pip's cache (assistant/native.py). The project's pin on
# llama-cpp-python is then already satisfied, so pip does not build it again.
$(VENV)/.installed: pyproject.toml assistant/native.py | $(BIN)/activate
	$(PY) -m pip install torch==2.13.0
	$(PY) -m assistant.native install --python $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Build llama.cpp again for this CPU (after a CPU or compiler change, or to replace a build that crashes).
rebuild-llama: | $(BIN)/activate
	$(PY) -m assistant.native install --python $(PY) --rebuild

# Debian's chromium for the browser tests (needs root or sudo; without either the browser tests skip, saying why).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "warning: installing chromium needs root or sudo; the browser tests will be skipped"; exit 0; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	    || echo "warning: could not install chromium; the browser tests will be skipped"; }

app: install
	$(BIN)/assistant ingest
	$(BIN)/assistant ui

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
