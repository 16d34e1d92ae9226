# The two commands of the README quickstart. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/reportgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

demo: $(BIN)/reportgen  ## build outputs/demo from the bundled demo runs (no account, no network)
	$(BIN)/reportgen build specs/demo.yaml

test: $(BIN)/reportgen  ## lint, type-check and run the test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(BIN)/reportgen  ## run the benchmarks (slow; prints figures)
	$(BIN)/python -m compileall -q reportgen
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/folder_build.py --files 300 --cold 9
	$(BIN)/python benchmarks/read_offline.py
	$(BIN)/python benchmarks/pdf_report.py
	$(BIN)/python benchmarks/server_fetch.py
	$(BIN)/python benchmarks/project_table.py

clean:
	rm -rf $(VENV) outputs/demo .pytest_cache .mypy_cache .ruff_cache
