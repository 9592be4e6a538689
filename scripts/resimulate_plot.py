"""Snakemake `script:` for rule resimulate_plot: view-to-view vs event-to-event spread figure."""

from jetfm.logs import redirect_to_log
from jetfm.simulate.resim.plot import plot_view_spread

with redirect_to_log(snakemake.log[0]):
    plot_view_spread(list(snakemake.input), snakemake.output.figure, snakemake.output.summary)
