# Two commands from a fresh clone with Python 3.11+: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo needs the runtime only; the test toolchain (haiku, rlax, pytest, ruff) comes with `make test`.
$(RUNTIME): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(RUNTIME) $(STAMP)

demo: $(RUNTIME)
	$(BIN)/reinforce train --env CartPole-v1
	@echo
	@echo "The 'reinforce' command lives in $(VENV): run 'source $(VENV)/bin/activate' to use it"
	@echo "(or '$(BIN)/reinforce ...'); 'pip install .' installs it into any environment."

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n auto --maxprocesses 8 --dist worksteal  # workers: one per core, 8 at most (memory)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(RUNTIME)
	$(BIN)/python benchmarks/cartpole.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
