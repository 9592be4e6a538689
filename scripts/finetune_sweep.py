"""Snakemake `script:` entry of rule `finetune_sweep`: one validation-sweep point (seed index 0) of an arm,
on the fine-tuning stage's ranks (jetfm.train.launch), resumed after a stop like `finetune`."""

from jetfm.logs import redirect_to_log
from jetfm.train import launch
from jetfm.train.signals import exit_for_retry

STAGE = "finetune"

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    threads = launch.rank_threads(snakemake.config, STAGE, snakemake.threads)
    launch.run(
        "jetfm.finetune.run:run_finetuning",
        {
            "config": snakemake.config,
            "method": snakemake.wildcards.method,
            "fraction": float(snakemake.wildcards.fraction),
            "seed_index": 0,
            "files": {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
            "out_dir": snakemake.params.out_dir,
            "backbone": snakemake.input.backbone[0] if snakemake.input.backbone else None,
            "overrides": {"progress": False, "threads": threads},
            "resume": "auto",
            "hparams": dict(snakemake.params.hparams),
        },
        snakemake.config,
        STAGE,
        snakemake.params.out_dir,
    )
