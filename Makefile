# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both install the exact versions in requirements-lock.txt, each file checked against its hash.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
# How the lock is made: pip-tools resolves pyproject.toml (with the dev extra) through pip, so the machine's pip
# configuration (its index and local wheels) applies; hashes of every file of each pinned release are recorded.
PIP_COMPILE := $(BIN)/pip-compile --generate-hashes --allow-unsafe --extra dev --strip-extras \
	--no-emit-index-url --no-emit-find-links --quiet --output-file $(LOCK) pyproject.toml

.PHONY: demo test lint setup lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fashionattr demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy src/fashionattr
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/mypy src/fashionattr
	$(BIN)/lint-imports

# Refresh the lock after editing pyproject.toml's dependencies: pins that still fit are kept. To move every pin to
# the newest release that fits, `make lock PIP_COMPILE_ARGS=--upgrade`.
lock: | $(BIN)/python
	$(BIN)/pip install --quiet 'pip-tools>=7.4'
	$(PIP_COMPILE) $(PIP_COMPILE_ARGS)

clean:
	rm -rf $(VENV) runs build *.egg-info
