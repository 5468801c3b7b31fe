# Two entry points: `make run` (the benchmark) and `make test`. Each creates
# the virtual environment when it is missing and installs pinned dependencies.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check venv bench-all clean

run: $(STAMP)
	$(BIN)/piu bench --out results/bench.json

test: $(STAMP) check
	$(BIN)/python -m pytest -q

# The architecture and the code's shape, before the suite: import contracts
# (layers, no ML stack in the light clients), lint, format and types.
check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .piu results
