# AdamWPrune — a thin Makefile: every target delegates to Python (adamwprune/).
#
#   make demo                      tracked CPU training demo (sets everything up)
#   make test                      the whole test suite (sets everything up)
#   make venv [EXTRAS=wandb]       only set up .venv (with trackio, and EXTRAS)
#   make defconfig DEFCONFIG=name [TRACKER=none|trackio|wandb|both|wandb,trackio] [GPU_MONITOR=y]
#   make menuconfig | make | make show | make test_matrix [SEEDS=N PARALLEL_JOBS=N CONTINUE=dir EXECUTOR=local|slurm]
#   make matrix-status RESULTS=dir  a matrix's runs (on SLURM: job states from sacct)
#   make trackio-test | make wandb-test   fake-data tracker self-tests
#   make multinode NODES=2 [GPUS_PER_NODE=1 PARTITION=p TIME=min WAIT=n ARGS="trainer flags"]  one run over SLURM nodes
#   make chaos [N=50]              kill -9 trials, lost/duplicated records counted (docs/chaos.md)
#   make prepare-data DATASET=finewebedu|shakespeare|mnist|cifar10|cifar100 [PREPARE_ARGS="--max-tokens 100000000"]
#
# Set-up (scripts/setup_venv.py, run with python3 by every target that needs .venv)
# installs into .venv what that target needs and nothing twice:
#   TORCH_REQUIREMENT  the torch to install (default torch); one that the venv already
#                      imports is kept, e.g. your own CUDA build; CI pins torch==2.13.0
#   TORCH_INDEX_URL    where torch comes from; unset: PyTorch's CPU wheel index on a
#                      machine without an NVIDIA driver, PyPI with one; empty (TORCH_INDEX_URL=):
#                      the default index (PyPI); e.g. https://download.pytorch.org/whl/cu126
#   EXTRAS             more extras of pyproject.toml: trackio, wandb, all, data, digits, dev
# make demo installs the trackio extra, make test dev + all (both trackers), and
# make / make test_matrix the trackers the configuration (or TRACKER=) selects (and scikit-learn
# for DATASET digits).

ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_REQUIREMENT ?= torch
EXTRAS ?=
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := all
.PHONY: all venv test demo defconfig menuconfig show test_matrix test-matrix trackio-test wandb-test \
        prepare-data bench chaos multinode update-graphs matrix-status clean FORCE

# Variables given on the make command line (TRACKER=, GPU_MONITOR=) are passed on
# by name so Python can tell "set on the command line" from "unset".
CLI_VARS := $(foreach v,TRACKER GPU_MONITOR SEEDS PARALLEL_JOBS CONTINUE EXECUTOR,$(if $(filter command line,$(origin $(v))),--set "$(v)=$($(v))"))

# What each target needs besides the core (set for the target and its prerequisite $(STAMP)).
venv: NEEDS := trackio
demo: NEEDS := trackio
test: NEEDS := dev all
trackio-test show: NEEDS := trackio
wandb-test: NEEDS := wandb
bench chaos: NEEDS := all
update-graphs matrix-status: NEEDS :=
all test_matrix test-matrix: NEEDS := --configured-trackers .config $(CLI_VARS)
prepare-data: NEEDS := $(if $(filter finewebedu,$(or $(DATASET),finewebedu)),data) $(if $(filter digits,$(DATASET)),digits)

# The stamp holds set-up's record; set-up returns at once, silent, when nothing is missing.
$(STAMP): FORCE
	@$(PYTHON) $(ROOT)scripts/setup_venv.py --venv "$(VENV)" --torch "$(TORCH_REQUIREMENT)" \
	    $(if $(filter undefined,$(origin TORCH_INDEX_URL)),,--torch-index-url="$(TORCH_INDEX_URL)") \
	    --extras "$(EXTRAS)" $(NEEDS)

FORCE:

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# --- experiment tracking -------------------------------------------------------
trackio-test: $(STAMP)
	$(PY) -m adamwprune.tracking.selftest trackio

wandb-test: $(STAMP)
	$(PY) -m adamwprune.tracking.selftest wandb

# --- configuration (kconfiglib) ------------------------------------------------
defconfig: $(STAMP)
	$(PY) -m adamwprune.kconfig defconfig "$(DEFCONFIG)" $(CLI_VARS)

menuconfig: $(STAMP)
	$(PY) -m adamwprune.kconfig menuconfig

all: $(STAMP)
	$(PY) -m adamwprune.kconfig run $(CLI_VARS)

show: $(STAMP)
	$(PY) -m adamwprune.kconfig show

# SEEDS=N (seed axis), PARALLEL_JOBS=N, CONTINUE=test_matrix_results_<id> (docs/test-matrix.md),
# EXECUTOR=slurm: every run one SLURM job, submitted with submitit (docs/slurm.md)
test_matrix test-matrix: $(STAMP)
	$(PY) -m adamwprune.kconfig run --matrix $(CLI_VARS)

# graphs and report.html of a matrix's results folder (docs/test-matrix.md)
update-graphs: $(STAMP)
	$(PY) -m adamwprune report "$(RESULTS)"

# a matrix's runs; on SLURM, its jobs' states read back from sacct (docs/slurm.md)
matrix-status: $(STAMP)
	$(PY) -m adamwprune matrix-status "$(RESULTS)"

# --- training -------------------------------------------------------------------
demo: $(STAMP)
	$(PY) -m adamwprune.kconfig defconfig gpt2-pydocs-cpu --set TRACKER=trackio && $(PY) -m adamwprune.kconfig run

# ONE GPT-2 run over NODES SLURM nodes, config.py of this directory (docs/slurm-multinode.md);
# waits for the job unless WAIT=n
multinode: NEEDS := --configured-trackers .config
multinode: $(STAMP)
	$(PY) -m adamwprune multinode --nodes "$(or $(NODES),2)" --gpus-per-node "$(or $(GPUS_PER_NODE),1)" \
	    $(if $(PARTITION),--partition "$(PARTITION)") $(if $(TIME),--time "$(TIME)") \
	    $(if $(filter n,$(WAIT)),,--wait) -- $(ARGS)

prepare-data: $(STAMP)
	$(PY) -m adamwprune.data prepare $(or $(DATASET),finewebedu) $(PREPARE_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/tracker_log_latency.py

# kill -9 at random moments, counted from the backends' storage (docs/chaos.md); N trials
chaos: $(STAMP)
	$(PY) benchmarks/chaos.py --trials $(or $(N),50)

clean:
	rm -rf $(VENV) .pytest_cache
