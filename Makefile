# Set-up and entry points. `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
# The CPU build of PyTorch; an unpinned torch would make pip fetch a multi-GB CUDA build.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; run: make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the default scenario: a short PPO training, then every baseline and the agent
# on common random numbers, with the report (tables and plots) under runs/demo/benchmark.
DEMO := runs/demo

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/meio train --scenario ex61 --config default --seed 0 --run-dir $(DEMO)/ppo-ex61
	$(BIN)/meio benchmark --scenario ex61 --models $(DEMO)/ppo-ex61 --out $(DEMO)/benchmark

# Lint and format first (ruff, configured in pyproject.toml): seconds, and a red run says why at once.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
