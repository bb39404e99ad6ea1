# Two entry points: `make demo` (the main job) and `make test` (lint + tests).
# Both create .venv and install everything they need; re-running is cheap.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-scaling clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch (on this project's machines it installs from local disk);
	# the library itself only asks for torch>=2.4. Elsewhere add --index-url https://download.pytorch.org/whl/cpu.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/perceiver-io train mlm

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --durations=10

bench-scaling: $(STAMP)
	$(BIN)/python bench/scaling.py

clean:
	rm -rf $(VENV)
