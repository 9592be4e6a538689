"""Snakemake `script:` entry of rule `images_transfer`: transfer vs random init over fractions x seeds."""

from jetfm.images.study import run_transfer_study
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    source = snakemake.config["images"]["transfer"]["source_checkpoint"] or None
    run_transfer_study(
        snakemake.config,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        source_checkpoint=source,
        threads=snakemake.threads,
    )
