"""Snakemake `script:` entry of rule `finetune_efficiency`: the data-efficiency table and figure."""

from jetfm.finetune.report import efficiency_from_runs
from jetfm.logs import redirect_to_log
from jetfm.provenance import make_provenance

with redirect_to_log(snakemake.log[0]):
    runs = list(snakemake.input.metrics)
    provenance = make_provenance(
        "finetune_efficiency", snakemake.config, snakemake.config["seed"], inputs=runs
    )
    efficiency_from_runs(
        runs,
        snakemake.output.csv,
        snakemake.output.json,
        snakemake.output.figure,
        extra={"provenance": provenance},
    )
