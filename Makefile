# Set-up and entry points. `make test` and `make run` work on a fresh clone:
# they create .venv from the pins in pyproject.toml when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nsp-installed

.PHONY: test test-slurm run report venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,models]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The pipeline on a live single-node SLURM cluster (installs slurm-wlm and munge when missing;
# needs root). Skipped with the reason printed where SLURM cannot run.
test-slurm: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" NSP_TEST_SLURM=1 $(BIN)/python -m pytest -q -s -rs tests/test_slurm.py

CORES ?= $(shell nproc)
CONFIG ?= config/config.yaml
# more Snakemake options for make run, e.g. SNAKEMAKE_ARGS=--dry-run
SNAKEMAKE_ARGS ?=

# Snakemake keeps a cache under $XDG_CACHE_HOME (default ~/.cache) and fails before reading the workflow
# where that cannot be written (a read-only or missing HOME: a service account, some cluster nodes); the
# pipeline then caches in .cache/ here.
ifneq ($(shell d="$${XDG_CACHE_HOME:-$$HOME/.cache}"; mkdir -p "$$d" 2>/dev/null && test -w "$$d" && echo ok),ok)
export XDG_CACHE_HOME := $(CURDIR)/.cache
endif

# The main job: the pipeline on the embedded default config (config/config.yaml) -> results/.
# Another experiment: make run CONFIG=config/scale.yaml (million-neuron nets -> results-scale/).
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" NSP_CONFIG=$(CONFIG) $(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

report: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" NSP_CONFIG=$(CONFIG) $(BIN)/snakemake --report results/report.html

bench: $(STAMP)
	$(BIN)/python bench/bench_graph.py
	$(BIN)/python bench/bench_transforms.py
	$(BIN)/python bench/bench_factored.py
	$(BIN)/python bench/bench_sem.py
	$(BIN)/python bench/bench_storage.py
	$(BIN)/python bench/bench_visualize.py
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_exact.py --quick
	$(BIN)/python bench/bench_zoo.py --quick
	$(BIN)/python bench/bench_contributions.py --quick
	$(BIN)/python bench/bench_reconstruct.py --quick

clean:
	rm -rf $(VENV) .pytest_cache src/*.egg-info
