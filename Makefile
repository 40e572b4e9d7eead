# emolib: `make demo` runs the demo study end to end; `make test` runs the tests.
# Both create .venv and install everything on a fresh machine.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
KERNEL ?= emolib
STAMP := $(VENV)/.emolib-installed

.DEFAULT_GOAL := help
.PHONY: help install demo smoke test test-fast lint bench clean-runs

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (emolib)" >/dev/null
	touch $(STAMP)

install: $(STAMP) ## create .venv, install emolib with its pinned dependencies, register the Jupyter kernel

demo: $(STAMP) ## run the demo study end to end into runs/demo (7.5-20 minutes on 2 cores: README, "Cost")
	$(BIN)/emolib run params/demo.yaml --out runs/demo --kernel $(KERNEL)

smoke: $(STAMP) ## run the tiny smoke study into runs/smoke (a few minutes)
	$(BIN)/emolib run params/smoke.yaml --out runs/smoke --kernel $(KERNEL)

test: $(STAMP) ## run the test suite (unit tests + one papermill run of all five notebooks at smoke scale)
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP) ## run the tests without the slow end-to-end run
	$(BIN)/python -m pytest -q -ra -m "not slow"

lint: $(STAMP) ## ruff and the import contracts alone (make test runs them too)
	$(BIN)/ruff check emolib tests benchmarks tools
	$(BIN)/lint-imports

bench: $(STAMP) ## print the extraction, IG and training benchmarks
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/ig.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/saving.py

clean-runs: ## delete runs/
	rm -rf runs
