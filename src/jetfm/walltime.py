"""Walltime caps per Slurm partition, and the chain of jobs a longer training runs as.

A cluster grants at most so many minutes per job on each partition (`sinfo -o "%P %l"`); a job that asks for
more is refused at submission or pends forever. So a training job whose expected runtime exceeds the cap of
its partition is requested *at* the cap and continues as a chain of jobs: Slurm sends SIGTERM
`STOP_LEAD_SECONDS` before the end (`--signal=TERM@300`, jetfm.train.launch), the loop writes a checkpoint
and exits 75 (jetfm.train.signals), Snakemake resubmits the job (the rule's `retries`, raised here by the
number of links the chain needs) and the next job resumes from the checkpoint (jetfm.train.resume).

Config (`slurm:` section, config/README.md): `max_runtime_minutes` {partition role: minutes or null}, the
roles being the profile's partitions (gpu = JETFM_SLURM_PARTITION_GPU, cpu, fpga); `runtime_minutes`
{training stage: minutes}, the expected runtime of one run of that stage before the cap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

STOP_LEAD_SECONDS = 300  # Slurm's SIGTERM comes this long before the walltime (sbatch --signal=TERM@300)
PARTITIONS = ("gpu", "cpu", "fpga")  # partition roles of profiles/slurm
MIN_CAP_MINUTES = 2 * STOP_LEAD_SECONDS // 60  # a chain link must train longer than its stop lead


def max_runtime(config: Mapping[str, Any], partition: str) -> int | None:
    """The cap of a partition role in minutes (`slurm.max_runtime_minutes.<partition>`); None: uncapped."""
    if partition not in PARTITIONS:
        raise ValueError(
            f"slurm.max_runtime_minutes: unknown partition {partition!r}; expected one of {PARTITIONS}"
        )
    limit = config.get("slurm", {}).get("max_runtime_minutes", {}).get(partition)
    if limit is None:
        return None
    if int(limit) < MIN_CAP_MINUTES:
        raise ValueError(
            f"slurm.max_runtime_minutes.{partition} = {limit}: expected at least {MIN_CAP_MINUTES} minutes "
            f"(Slurm stops a training {STOP_LEAD_SECONDS // 60} minutes before the walltime to checkpoint it)"
        )
    return int(limit)


def cap(config: Mapping[str, Any], partition: str, minutes: float) -> tuple[int, int]:
    """(minutes to request, extra jobs) for a job expected to run `minutes` on `partition`.

    Within the cap: (ceil(minutes), 0). Longer: (cap, n - 1) where n = ceil(minutes / (cap - stop lead)) is
    the number of chained jobs (each loses the stop lead to its checkpoint); add n - 1 to the rule's
    `retries` (`retries`, below) so Snakemake resubmits the job until the chain is done.
    """
    if minutes <= 0:
        raise ValueError(
            f"expected runtime of a job on partition {partition}: {minutes} minutes, expected > 0"
        )
    limit = max_runtime(config, partition)
    if limit is None or minutes <= limit:
        return math.ceil(minutes), 0
    return limit, math.ceil(minutes / (limit - STOP_LEAD_SECONDS / 60)) - 1


def retries(base: int, extra: int) -> int | None:
    """A rule's `retries:` directive: the `extra` jobs of its walltime chain plus `base` retries after
    failures (lost node, preemption: `slurm.chain_retries`); None when there is no chain, so the profile's
    --retries applies (Snakemake knows --retries only after the Snakefile is parsed, hence a config key)."""
    return base + extra if extra else None


def expected_minutes(config: Mapping[str, Any], stage: str) -> int | None:
    """The expected runtime of one run of training stage `stage` (`slurm.runtime_minutes.<stage>`), if set."""
    value = config.get("slurm", {}).get("runtime_minutes", {}).get(stage)
    return None if value is None else int(value)


def stage_walltime(config: Mapping[str, Any], stage: str, partition: str = "gpu") -> tuple[int, int] | None:
    """`cap` of a training stage's expected runtime (None when the config gives it none)."""
    minutes = expected_minutes(config, stage)
    return None if minutes is None else cap(config, partition, minutes)
