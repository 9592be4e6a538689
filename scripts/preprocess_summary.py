"""Snakemake `script:` for rule preprocess_summary: one summary (counts in == out) over every group's."""

from pathlib import Path

from jetfm.logs import redirect_to_log
from jetfm.preprocess.groups import write_summary

with redirect_to_log(snakemake.log[0]):
    write_summary(Path(snakemake.output[0]).parent, list(snakemake.input))
