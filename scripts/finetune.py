"""Snakemake `script:` entry of rule `finetune` (as `jetfm finetune`)."""

from jetfm.logs import redirect_to_log
from jetfm.train.finetune_cli import run_finetuning

with redirect_to_log(snakemake.log[0]):
    run_finetuning(
        snakemake.config,
        snakemake.wildcards.method,
        float(snakemake.wildcards.fraction),
        int(snakemake.wildcards.seed),
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        backbone=snakemake.input.backbone[0] if snakemake.input.backbone else None,
        overrides={"progress": False, "threads": snakemake.threads},
    )
