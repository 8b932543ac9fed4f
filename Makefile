# The two commands of the README. Each creates the virtual environment on first use.
#   make run    run the workflow on the embedded default configuration
#   make test   run the test suite (on TEST_WORKERS processes; `make test-fast`: the unit tests alone)
PYTHON ?= python3.11
VENV ?= .venv
CONFIG ?= config/config.yaml
CORES ?= all
# GPUs of this machine: at most this many GPU training jobs run at once (each in its own slot, prdnet/gpu_slots.py)
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed

# pytest-xdist workers of `make test` (tests/conftest.py orders the modules, slowest first). Three on
# 2 cores: the SLURM module's worker mostly waits on the scheduler's polling, and a third worker fills
# that idle core.
TEST_WORKERS ?= 3
PYTEST = PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope
# the unit tests: no workflow run, no service, no network (markers in pyproject.toml)
UNIT_TESTS := not slow and not workflow and not service and not network

.PHONY: run test test-fast coverage env unlock dry-run plan-paper clean-results report gpu-check dashboard

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: on a CPU machine 2.13.0 is the CPU build; an unpinned torch pulls CUDA.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# matbench 0.6 pins matminer 0.7.4 and scipy 1.7.3, which do not install on Python 3.11.
	$(BIN)/python -m pip install --quiet --no-deps matbench==0.6
	touch $(STAMP)

run: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --cores $(CORES) --resources gpu=$(GPUS)

# One self-contained HTML file, results/report.html (or <results_dir>/report.html of CONFIG): run after `make run`.
report: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --cores $(CORES) html_report

# The MLflow UI on the runs of CONFIG (its SQLite store), and the URL that opens on their table
# (prdnet/dashboard.py); Ctrl-C stops it. With a tracking server: the URL on that server.
DASHBOARD_PORT ?= 5000
dashboard: $(STAMP)
	$(BIN)/python -m prdnet.dashboard --config $(CONFIG) --port $(DASHBOARD_PORT)

# After a kill -9 or a power cut Snakemake's lock on the working directory stays: release it once
# (no job is lost: every finished job is kept and unfinished ones resume from their checkpoint).
unlock: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --unlock

dry-run: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --dry-run

# The paper's whole reproduction (config/paper.yaml), planned offline: jobs per rule. Nothing runs,
# so a placeholder stands in for MP_API_KEY when it is not set (the real run needs the real key).
# On a GPU machine: every GPU figure and check in one call (benchmarks/gpu_check.py), at most 8
# minutes; without CUDA, one line and exit 0.
gpu-check: $(STAMP)
	PYTHON=$(BIN)/python bash benchmarks/gpu_check.sh

plan-paper: $(STAMP)
	MP_API_KEY="$${MP_API_KEY:-not-needed-for-a-plan}" PATH="$(BIN):$$PATH" $(BIN)/snakemake --profile workflow/profiles/local --configfile config/paper.yaml --dry-run --quiet rules

test: $(STAMP)
	$(PYTEST) $(PYTEST_ARGS)

# The inner loop: the unit tests alone, a few minutes.
test-fast: $(STAMP)
	$(PYTEST) -m "$(UNIT_TESTS)" $(PYTEST_ARGS)

# Line coverage of prdnet/ by the whole suite (the tests' own process; jobs they start as
# subprocesses are not counted).
coverage: $(STAMP)
	$(PYTEST) --cov=prdnet --cov-report=term $(PYTEST_ARGS)
