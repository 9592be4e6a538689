"""Snakemake `script:` entry of rule `finetune_sweep`: one validation-sweep point (seed index 0) of an arm."""

from jetfm.finetune.run import run_finetuning
from jetfm.logs import redirect_to_log
from jetfm.train.signals import exit_for_retry

with redirect_to_log(snakemake.log[0]), exit_for_retry():
    run_finetuning(
        snakemake.config,
        snakemake.wildcards.method,
        float(snakemake.wildcards.fraction),
        0,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        backbone=snakemake.input.backbone[0] if snakemake.input.backbone else None,
        overrides={"progress": False, "threads": snakemake.threads},
        resume="auto",
        hparams=dict(snakemake.params.hparams),
    )
