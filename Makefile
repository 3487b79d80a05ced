# Two commands for a fresh clone: `make setup` then `make test`. `make check` runs the main job offline.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test unit lint check bench run clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'

test: lint
	$(BIN)/pytest

unit: lint
	$(BIN)/pytest -m 'not e2e'

lint:
	$(BIN)/ruff check webhook tests bench
	$(BIN)/ruff format --check webhook tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

check:
	$(BIN)/python -m webhook check examples/

bench:
	$(BIN)/python bench/decisions.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
