PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test lint install install-test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(PIP) -e .

install-test: $(BIN)/python
	$(PIP) -e ".[test]"

demo: install
	$(BIN)/lvebm demo --out demo-output

lint: install-test
	$(BIN)/ruff check lvebm tests benchmarks
	$(BIN)/ruff format --check lvebm tests benchmarks

test: install-test lint
	$(BIN)/python -m pytest

bench: $(BIN)/python
	$(PIP) -e ".[test,bench]"

clean:
	rm -rf $(VENV) demo-output .pytest_cache
