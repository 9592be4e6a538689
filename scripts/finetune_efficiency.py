"""Snakemake `script:` entry of rule `finetune_efficiency`: the data-efficiency table, figure and the
protocol table (paired gains)."""

import json

from jetfm.atomic import write_text_atomic
from jetfm.finetune.report import efficiency_from_runs, protocol_table
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
        heldout=list(snakemake.params.heldout) or None,
    )
    with open(snakemake.output.json) as fh:
        write_text_atomic(snakemake.output.table, protocol_table(json.load(fh)))
