"""Snakemake `script:` entry of rule `fpga_synth`: C synthesis where a tool exists (`jetfm fpga synth`)."""

from jetfm.fpga.stage import synthesise_student
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    synthesise_student(
        snakemake.config, snakemake.wildcards.student, list(snakemake.input.test), snakemake.params.out_dir
    )
