"""Snakemake `script:` entry of rule `train` (and `robustness_member`): one model on the dataset's shards (as
`jetfm train`), on train.gpus x train.nodes ranks (jetfm.train.launch: inline for one, else torchrun or srun).

Resumes an unfinished run of the same config (a retry after walltime, preemption or a lost node); a stop on
SIGTERM/SIGUSR1 writes a checkpoint and exits with RETRY_EXIT_CODE, a failure Snakemake's `retries` redo.
"""

from jetfm.logs import redirect_to_log
from jetfm.train import launch
from jetfm.train.signals import exit_for_retry

STAGE = "train"

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    threads = launch.rank_threads(snakemake.config, STAGE, snakemake.threads)
    launch.run(
        "jetfm.train.run:run_training",
        {
            "config": snakemake.config,
            "model": snakemake.wildcards.model,
            "files": {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
            "out_dir": snakemake.params.out_dir,
            # params.overrides: extra TrainConfig fields (an ensemble member's seed: rule robustness_member)
            "overrides": {"progress": False, "threads": threads, **snakemake.params.get("overrides", {})},
            "resume": "auto",
        },
        snakemake.config,
        STAGE,
        snakemake.params.out_dir,
    )
