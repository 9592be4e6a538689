# Quick start: `make run` (whole pipeline, small default config, local profile) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install run test lint format report clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Pin torch first: the CPU build of 2.13.0; an unpinned torch pulls multi-GB CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[workflow,fpga,dev]'
	touch $@

install: $(VENV)/.installed

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
