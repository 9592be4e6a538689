"""Snakemake `script:` for rule simulate_plot: soft-drop mass and jet pT per class (validation figure)."""

from jetfm.logs import redirect_to_log
from jetfm.simulate.plots import plot_validation

with redirect_to_log(snakemake.log[0]):
    plot_validation(list(snakemake.input), snakemake.output.figure, snakemake.output.summary)
