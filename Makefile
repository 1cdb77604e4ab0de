PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[gateway,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamguard demo

test: $(STAMP)
	$(BIN)/ruff check streamguard gateway tests bench models
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.eer
	$(BIN)/python -m bench.throughput

clean:
	rm -rf $(VENV)
