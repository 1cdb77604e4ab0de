PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The demo needs only the runtime; tests also need the dev extra (pytest, torch for imports).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[gateway]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[gateway,dev]'
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

clean:
	rm -rf $(VENV)
