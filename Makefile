# Two commands set up a fresh machine (see README): `make demo` and `make test`.
# Both create the virtual environment in .venv on first use (Python 3.11+ required).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean wheel-check

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rollrisk needs Python 3.11+, found " + sys.version.split()[0] + " at $(PYTHON); set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,learn]"
	@touch $(STAMP)

install: $(STAMP)

## demo: simulate a portfolio and run the whole flow on it (outputs under runs/demo)
demo: install
	$(BIN)/rollrisk demo

## test: the whole test suite (unit, model, e2e, reliability), spread over the machine's cores
## (pytest-xdist; a single test or file: .venv/bin/python -m pytest tests/unit/test_x.py)
test: install
	$(BIN)/python -m pytest -n auto --dist worksteal

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs .pytest_cache .ruff_cache .hypothesis

## wheel-check: the packaging proof: build the wheel, install it (with its dependencies from the
## package index) into a fresh environment, run the default demo from a folder outside the repo
wheel-check: install
	rm -rf build/wheel-check build/lib && mkdir -p build/wheel-check/elsewhere
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation --quiet --wheel-dir build/wheel-check/dist .
	rm -rf build/lib
	$(PYTHON) -m venv build/wheel-check/venv
	build/wheel-check/venv/bin/python -m pip install --quiet build/wheel-check/dist/rollrisk-*.whl
	cd build/wheel-check/elsewhere && env -u MLFLOW_TRACKING_URI ../venv/bin/rollrisk demo
