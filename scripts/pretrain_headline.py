"""Snakemake `script:` entry of rule `pretrain_headline`: the headline numbers on the report's front page."""

from jetfm.finetune.report import write_headline
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    print(
        write_headline(
            snakemake.output.headline,
            snakemake.input.efficiency,
            list(snakemake.input.train_metrics),
            list(snakemake.input.pretrain),
        )
    )
