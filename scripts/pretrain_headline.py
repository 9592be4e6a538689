"""Snakemake `script:` entry of rule `pretrain_headline`: the headline numbers on the report's front page."""

from jetfm.logs import redirect_to_log
from jetfm.train.finetune_report import write_headline

with redirect_to_log(snakemake.log[0]):
    print(
        write_headline(
            snakemake.output.headline,
            snakemake.input.efficiency,
            list(snakemake.input.train_metrics),
            list(snakemake.input.pretrain),
        )
    )
