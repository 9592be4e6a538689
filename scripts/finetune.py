"""Snakemake `script:` entry of rules `finetune` (as `jetfm finetune`) and `finetune_sweep` (one validation-
sweep point: seed index 0 and the point's hyperparameters), on the stage's ranks (train.gpus x train.nodes,
overridable in finetune.train; jetfm.train.launch).

Resumes an unfinished run of the same settings; a stop on SIGTERM/SIGUSR1 checkpoints and exits for a retry.
"""

from jetfm.logs import redirect_to_log
from jetfm.train import launch
from jetfm.train.signals import exit_for_retry

STAGE = "finetune"

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    threads = launch.rank_threads(snakemake.config, STAGE, snakemake.threads)
    hparams = snakemake.params.get("hparams")  # finetune_sweep only
    launch.run(
        "jetfm.finetune.run:run_finetuning",
        {
            "config": snakemake.config,
            "method": snakemake.wildcards.method,
            "fraction": float(snakemake.wildcards.fraction),
            "seed_index": int(snakemake.wildcards.get("seed", 0)),
            "files": {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
            "out_dir": snakemake.params.out_dir,
            "backbone": snakemake.input.backbone[0] if snakemake.input.backbone else None,
            "overrides": {"progress": False, "threads": threads},
            "resume": "auto",
            "hparams": dict(hparams) if hparams is not None else None,
        },
        snakemake.config,
        STAGE,
        snakemake.params.out_dir,
    )
