"""Snakemake `script:` for rule simulate: one class x shard (jetfm.simulate.run.simulate_shard)."""

from jetfm.logs import redirect_to_log
from jetfm.simulate.run import simulate_shard

with redirect_to_log(snakemake.log[0]):
    simulate_shard(
        dict(snakemake.config),
        snakemake.wildcards.cls,
        int(snakemake.wildcards.shard),
        snakemake.output[0],
        progress=True,
    )
