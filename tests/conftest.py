"""Shared pytest fixtures.

`slurm_cluster` (session scope): a real single-node Slurm 22.05 with accounting, started once per test session
by tests/slurm_harness/start.sh and stopped at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_harness import cluster as harness
from slurm_harness.cluster import JobResult, SlurmCluster

__all__ = ["JobResult", "SlurmCluster"]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running single-node Slurm (munged, MariaDB, slurmdbd, slurmctld, slurmd) for the whole session.

    Partitions `cpu` (default), `gpu` (2 GRES "gpu" with NO GPU hardware: `--gpus` requests are accepted,
    the job runs on the CPU) and `fpga`, all on this node (CPUs = nproc, select/cons_tres with
    CR_Core_Memory, so 1-CPU jobs run side by side); accounting through slurmdbd, so `sacct` works.

    While the session runs, `SLURM_CONF` points at the cluster and this interpreter's bin directory
    (.venv/bin) comes first on PATH, in `os.environ` itself, so `sbatch`, `sacct`, Snakemake's slurm
    executor and dask-jobqueue all talk to it, and jobs (submitted with --export=ALL) find `python`,
    `snakemake` and `jetfm`.
    For explicit subprocesses use `slurm_cluster.env`.

    Helpers (see tests/slurm_harness/cluster.py):
      - `slurm_cluster.submit(command, partition="cpu", ntasks=1, cpus_per_task=1, mem_mb=1000, gpus=0,
        workdir=..., timeout=300) -> JobResult` runs `sbatch --wrap command`, waits, and returns sacct's
        `state`, `exit_code`, `partition`, `account`, `alloc_tres`, the job `output` and its `steps`.
        A 2-rank DDP run: `slurm_cluster.submit("srun python train.py ...", ntasks=2, workdir=tmp_path)`.
      - `slurm_cluster.sacct(job_ids=None)` -> rows of JobID, JobName, Partition, Account, State, ExitCode...
      - `slurm_cluster.run("sinfo", ...)` for any client command.
    `slurm_cluster.setup_seconds` is the measured start-up time.

    Skipped, with the reason, only where Slurm cannot be installed or started by us (not root, not Linux,
    no apt-get); installs the Debian packages first if they are missing.
    """
    reason = harness.unavailable_reason()
    if reason:
        pytest.skip(reason)
    # Not under pytest's basetemp: that is mode 0700, and the munge and mysql users must reach their dirs.
    home = Path(tempfile.mkdtemp(prefix="jetfm-slurm-"))
    home.chmod(0o755)
    cluster = harness.start(home)
    print(f"\n{cluster.start_log.strip()}")
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    os.environ["SLURM_CONF"] = cluster.env["SLURM_CONF"]
    os.environ["PATH"] = cluster.env["PATH"]
    try:
        yield cluster
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        harness.stop(cluster)
