"""Snakemake `script:` entry of rule `scaling_pretrain`: the pretraining of one model size of a sweep."""

from jetfm.logs import redirect_to_log
from jetfm.scaling.cell import pretrain_size
from jetfm.train.signals import exit_for_retry

with redirect_to_log(snakemake.log[0]), exit_for_retry():  # stopped at walltime: exit 75, resumed next job
    pretrain_size(
        snakemake.config,
        snakemake.wildcards.size,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        threads=snakemake.threads,
    )
