# Two commands: `make demo` (set up, then run the whole flow on synthetic data) and `make test`.
# Both create .venv from nothing when it is missing and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format setup clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip check  # one consistent set, TOSA tools included (pyproject.toml: onnx 1.21 beside tosa-tools)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fcos3d demo --out demo_out

# Lint first (seconds): a formatting or import-order slip fails CI like a failing test.
test: lint
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) demo_out work_dirs
