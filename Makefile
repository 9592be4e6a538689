# Quick start: `make run` (whole pipeline, small default config, local profile) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install install-cuda run test lint format report clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Pin torch first: the CPU build of 2.13.0; an unpinned torch pulls multi-GB CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[workflow,fpga,dev]'
	touch $@

install: $(VENV)/.installed

# The CUDA build of the same torch version, for GPU nodes: `make install-cuda CUDA=cu128` (cu126, cu128, cu130:
# the wheel indexes of download.pytorch.org; pick the newest your driver supports, `nvidia-smi` top right).
# Training refuses to run on the CPU in a job that was given GPUs while torch is the CPU build.
CUDA ?= cu128
TORCH_VERSION = $(shell sed -n 's/.*"torch==\([0-9.]*\)".*/\1/p' pyproject.toml)
install-cuda: install
	$(PY) -m pip install --index-url https://download.pytorch.org/whl/$(CUDA) "torch==$(TORCH_VERSION)+$(CUDA)"
	$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
		'GPUs visible:', torch.cuda.device_count())"

run: install
	$(SNAKEMAKE) --profile profiles/default
	$(SNAKEMAKE) --profile profiles/default --report report.html

test: install
	$(PY) -m pytest

# Only the tests against the single-node Slurm of tests/slurm_harness (root; installs Debian packages): every
# test marked `slurm`, whatever its stage folder.
test-slurm: install
	$(PY) -m pytest -m slurm tests

lint: install
	$(VENV)/bin/ruff check src scripts tests bench
	$(VENV)/bin/ruff format --check src scripts tests bench
	$(SNAKEMAKE) --lint

format: install
	$(VENV)/bin/ruff format src scripts tests bench
	$(VENV)/bin/ruff check --fix src scripts tests bench

clean:
	rm -rf results logs .snakemake report.html
