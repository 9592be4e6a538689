"""Snakemake `script:` entry of rule `train`: one model on the dataset's shards (as `jetfm train`).

Resumes an unfinished run of the same config (a retry after walltime, preemption or a lost node); a stop on
SIGTERM/SIGUSR1 writes a checkpoint and exits with RETRY_EXIT_CODE, a failure Snakemake's `retries` redo.
"""

from jetfm.logs import redirect_to_log
from jetfm.train.run import run_training
from jetfm.train.signals import exit_for_retry

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    run_training(
        snakemake.config,
        snakemake.wildcards.model,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        # params.overrides: extra TrainConfig fields (an ensemble member's seed: rule robustness_member)
        overrides={"progress": False, "threads": snakemake.threads, **snakemake.params.get("overrides", {})},
        resume="auto",
    )
