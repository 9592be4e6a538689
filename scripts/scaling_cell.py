"""Snakemake `script:` entry of rule `scaling_cell`: one cell of the sweep (as `jetfm scaling cell`)."""

from jetfm.logs import redirect_to_log
from jetfm.scaling.cell import run_cell
from jetfm.train.signals import exit_for_retry

with redirect_to_log(snakemake.log[0]), exit_for_retry():  # stopped at walltime: exit 75, resumed next job
    run_cell(
        snakemake.config,
        snakemake.wildcards.cell,
        snakemake.input.train,
        snakemake.input.val,
        snakemake.params.out_dir,
        threads=snakemake.threads,
        test_file=snakemake.input.test,
    )
