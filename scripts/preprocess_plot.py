"""Snakemake `script:` for rule preprocess_plot: per-class feature distributions for the report."""

from jetfm.logs import redirect_to_log
from jetfm.preprocess.plots import plot_features

with redirect_to_log(snakemake.log[0]):
    plot_features(list(snakemake.input.shards), snakemake.input.summary, snakemake.output[0])
