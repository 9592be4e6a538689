"""Snakemake `script:` entry of rule `train`: one model on the dataset's shards (as `jetfm train`)."""

from jetfm.logs import redirect_to_log
from jetfm.train.cli import run_training

with redirect_to_log(snakemake.log[0]):
    run_training(
        snakemake.config,
        snakemake.wildcards.model,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        # params.overrides: extra TrainConfig fields (e.g. an ensemble member's seed, rule robustness_member)
        overrides={"progress": False, "threads": snakemake.threads, **snakemake.params.get("overrides", {})},
    )
