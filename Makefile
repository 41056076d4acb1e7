# AdamWPrune — a thin Makefile: every target delegates to Python (adamwprune/).
#
#   make demo                      tracked CPU training demo (sets everything up)
#   make test                      the whole test suite (sets everything up)
#   make defconfig DEFCONFIG=name [TRACKER=none|trackio|wandb|both|wandb,trackio] [GPU_MONITOR=y]
#   make menuconfig | make | make show | make test_matrix
#   make trackio-test | make wandb-test   fake-data tracker self-tests
#   make prepare-data DATASET=finewebedu|shakespeare [PREPARE_ARGS="--max-tokens 100000000"]
#
# TORCH_REQUIREMENT picks the torch build installed into the venv; keep your own
# (e.g. a CUDA build) or pin a CPU wheel: make test TORCH_REQUIREMENT=torch==2.13.0

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_REQUIREMENT ?= torch
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := all
.PHONY: all venv test demo defconfig menuconfig show test_matrix trackio-test wandb-test \
        prepare-data bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_REQUIREMENT)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# --- experiment tracking -------------------------------------------------------
trackio-test: $(STAMP)
	$(PY) -m adamwprune.tracking.selftest trackio

wandb-test: $(STAMP)
	$(PY) -m adamwprune.tracking.selftest wandb

# --- configuration (kconfiglib) ------------------------------------------------
# Variables given on the make command line (TRACKER=, GPU_MONITOR=) are passed on
# by name so Python can tell "set on the command line" from "unset".
CLI_VARS := $(foreach v,TRACKER GPU_MONITOR,$(if $(filter command line,$(origin $(v))),--set "$(v)=$($(v))"))

defconfig: $(STAMP)
	$(PY) -m adamwprune.kconfig defconfig "$(DEFCONFIG)" $(CLI_VARS)

menuconfig: $(STAMP)
	$(PY) -m adamwprune.kconfig menuconfig

all: $(STAMP)
	$(PY) -m adamwprune.kconfig run $(CLI_VARS)

show: $(STAMP)
	$(PY) -m adamwprune.kconfig show

test_matrix: $(STAMP)
	$(PY) -m adamwprune.kconfig run --matrix $(CLI_VARS)

# --- training -------------------------------------------------------------------
demo: $(STAMP)
	$(PY) -m adamwprune.kconfig defconfig gpt2-pydocs-cpu --set TRACKER=trackio && $(PY) -m adamwprune.kconfig run

prepare-data: $(STAMP)
	$(PY) -m adamwprune.data prepare $(or $(DATASET),finewebedu) $(PREPARE_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/tracker_log_latency.py

clean:
	rm -rf $(VENV) .pytest_cache
