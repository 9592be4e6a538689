"""Snakemake `script:` entry of rule `fpga_train`: distil, then prune + QAT (`jetfm fpga train`)."""

from jetfm.fpga.stage import train_student
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    train_student(
        snakemake.config,
        snakemake.wildcards.student,
        {split: list(snakemake.input[split]) for split in ("train", "val", "test")},
        snakemake.params.out_dir,
        teacher=snakemake.input.teacher,
        overrides={"progress": False, "threads": snakemake.threads},
    )
