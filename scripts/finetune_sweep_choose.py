"""Snakemake `script:` entry of rule `finetune_sweep_choose`: the sweep point with the best validation."""

from jetfm.finetune.protocol import choose
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    record = choose(list(snakemake.input.metrics), list(snakemake.params.grid), snakemake.output.choice)
    print(f"chosen {record['chosen']} (point {record['point']}, {record['metric']})")
