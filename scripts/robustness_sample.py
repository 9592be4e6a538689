"""Snakemake `script:` for rule robustness_sample: held-out events, nominal + shifted versions (one class)."""

from jetfm.logs import redirect_to_log
from jetfm.robustness.samples import write_sample_shard

with redirect_to_log(snakemake.log[0]):
    write_sample_shard(
        dict(snakemake.config), snakemake.wildcards.cls, int(snakemake.wildcards.shard), snakemake.output[0]
    )
