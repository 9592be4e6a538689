"""Snakemake `script:` entry of rule `scaling_collect`: the cells' result.json files -> runs.csv."""

from jetfm.logs import redirect_to_log
from jetfm.scaling.runs import collect

with redirect_to_log(snakemake.log[0]):
    print(f"{len(collect(list(snakemake.input.results), snakemake.output.runs))} cells")
