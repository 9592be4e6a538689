"""Snakemake `script:` entry of rule `fpga_convert`: hls4ml project, compile, emulation (`jetfm fpga
convert`)."""

from jetfm.fpga.stage import convert_student
from jetfm.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    convert_student(
        snakemake.config,
        snakemake.wildcards.student,
        list(snakemake.input.test),
        snakemake.params.out_dir,
        teacher=snakemake.input.teacher,
    )
