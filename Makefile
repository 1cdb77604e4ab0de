PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The demo needs only the runtime; tests also need the dev extra (pytest, torch for imports).
# resemblyzer only carries the GE2E speaker weights (read without torch), so it is
# installed without its declared dependencies (torch among them).
$(VENV)/.runtime: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[gateway]'
	$(BIN)/pip install --quiet --no-deps 'resemblyzer==0.1.4'
	touch $@

$(VENV)/.dev: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[gateway,dev]'
	$(BIN)/pip install --quiet --no-deps 'resemblyzer==0.1.4'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/streamguard demo

lint: $(VENV)/.dev
	$(BIN)/ruff check streamguard gateway tests bench models
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(VENV)/.dev
	$(BIN)/python -m bench.eer
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.calls
	$(BIN)/python -m bench.speaker

clean:
	rm -rf $(VENV)
