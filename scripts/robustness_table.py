"""Snakemake `script:` for rule robustness_table: robustness.csv and the drop / distance figure."""

from jetfm.logs import redirect_to_log
from jetfm.robustness.plots import plot_robustness
from jetfm.robustness.table import write_table

with redirect_to_log(snakemake.log[0]):
    evaluations = write_table(list(snakemake.input), snakemake.output.table)
    plot_robustness(evaluations, snakemake.output.figure)
