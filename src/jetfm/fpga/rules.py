"""Helpers of `workflow/rules/fpga.smk`, kept in the package (no functions among the rules): a student's
output paths as wildcard patterns, and the Slurm partition of `fpga_synth`."""

from __future__ import annotations

import os
from typing import Any

from jetfm import paths

STUDENT = "{student}"  # the rules' wildcard


def student_out(name: str = "") -> str:
    """A student's output (or its directory when `name` is empty) as a wildcard pattern."""
    return os.path.join(paths.fpga_dir(STUDENT), name) if name else paths.fpga_dir(STUDENT)


def synth_partition(config: dict[str, Any]) -> str:
    """Vendor synthesis needs the licensed partition (JETFM_SLURM_PARTITION_FPGA, default fpga); the
    open-source estimate runs anywhere, so it goes to the CPU partition (JETFM_SLURM_PARTITION_CPU, default
    cpu)."""
    if config["fpga"]["synthesis"]["vendor"]:
        return os.environ.get("JETFM_SLURM_PARTITION_FPGA") or "fpga"
    return os.environ.get("JETFM_SLURM_PARTITION_CPU") or "cpu"
