"""Snakemake `script:` entry of rule `finetune_efficiency`: the data-efficiency table and figure."""

from jetfm.logs import redirect_to_log
from jetfm.provenance import make_provenance
from jetfm.train.finetune_report import efficiency_from_runs

with redirect_to_log(snakemake.log[0]):
    provenance = make_provenance(
        "finetune_efficiency", snakemake.config, snakemake.config["seed"], inputs=list(snakemake.input.metrics)
    )
    efficiency_from_runs(
        list(snakemake.input.metrics),
        snakemake.output.csv,
        snakemake.output.json,
        snakemake.output.figure,
        extra={"provenance": provenance},
    )
