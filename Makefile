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

demo: $(STAMP)
	$(BIN)/meio simulate --scenario ex61 --policy base-stock --kind echelon \
		--levels retailer=6.49,dc=12.02,plant=22.71 --periods 20000 --warmup 200 --replications 10 --seed 0
	$(BIN)/meio baselines --scenario ex61

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
