# Two entry points for a newcomer: `make train` and `make test`. Both create .venv and install
# everything on first use (pinned by requirements/constraints.txt), then do their job.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --constraint requirements/constraints.txt
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train test bench clean-outputs

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first and pinned: a later unpinned resolution would otherwise pull the newest CUDA build
	$(PIP) torch
	$(PIP) --editable ".[dev,bench,sweep]"
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(VENV)/bin/rl-train $(ARGS)

# the layers contract first (pyproject.toml, docs/architecture.md), then the suite on every core (pytest-xdist);
# loadscope keeps each test module on one worker, so a module-scoped fixture (a trained run) is built once
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -n auto --dist loadscope $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) scripts/bench_sps.py $(ARGS)
