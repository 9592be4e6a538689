"""Snakemake `script:` entry of rule `scaling_fit`: runs.csv -> fit.json and the report figures."""

from jetfm.logs import redirect_to_log
from jetfm.scaling.sweep import describe, fit_sweep

with redirect_to_log(snakemake.log[0]):
    print(describe(fit_sweep(snakemake.config, snakemake.input.runs, snakemake.params.out_dir)))
