"""Snakemake `script:` for rule resimulate: K views of the same hard events (jetfm.simulate.resim.run)."""

from jetfm.logs import redirect_to_log
from jetfm.simulate.resim.run import resimulate_shard

with redirect_to_log(snakemake.log[0]):
    resimulate_shard(
        dict(snakemake.config),
        snakemake.wildcards.cls,
        int(snakemake.wildcards.shard),
        snakemake.output[0],
        progress=False,
    )
