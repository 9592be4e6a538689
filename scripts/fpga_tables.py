"""Snakemake `script:` entry of rule `fpga_tables`: accuracy, synthesis, trigger and Pareto tables
of all students, and the Pareto figure."""

from jetfm.fpga.stage import write_tables
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    write_tables(
        list(snakemake.input.emulation),
        list(snakemake.input.synthesis),
        snakemake.output.accuracy,
        snakemake.output.synthesis,
        snakemake.output.headline,
        snakemake.output.trigger,
        snakemake.output.pareto,
        snakemake.output.pareto_plot,
    )
