"""Snakemake `script:` entry of rule `train_compare`: the test-split table of all trained models."""

from jetfm.logs import redirect_to_log
from jetfm.train.compare import write_comparison

with redirect_to_log(snakemake.log[0]):
    write_comparison(list(snakemake.input.metrics), snakemake.output.table)
