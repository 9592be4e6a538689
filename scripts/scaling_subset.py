"""Snakemake `script:` entry of rule `scaling_subset`: the first D nominal jets of a split's fixed order."""

from jetfm.logs import redirect_to_log
from jetfm.scaling.subset import write_subset

with redirect_to_log(snakemake.log[0]):
    print(
        write_subset(
            list(snakemake.input),
            int(snakemake.wildcards.jets),
            snakemake.output[0],
            snakemake.params.seed,
            snakemake.wildcards.split,
        )
    )
