"""Helpers of `workflow/rules/fpga.smk`, kept in the package (no functions among the rules): a student's
output paths as wildcard patterns, the student names the rules accept, and the Slurm partition of
`fpga_synth`."""

from __future__ import annotations

import os
import re
from typing import Any

from jetfm import paths

STUDENT = "{student}"  # the rules' wildcard


def student_out(name: str = "") -> str:
    """A student's output (or its directory when `name` is empty) as a wildcard pattern."""
    return os.path.join(paths.fpga_dir(STUDENT), name) if name else paths.fpga_dir(STUDENT)


def student_pattern(students: list[str]) -> str:
    """The rules' wildcard constraint: exactly the configured student names (any name whose kind is known;
    the config validation checks that), nothing else."""
    return "|".join(re.escape(s) for s in students) or "(?!)"


def synth_partition(config: dict[str, Any]) -> str:
    """Vendor synthesis needs the licensed partition (JETFM_SLURM_PARTITION_FPGA, default fpga); the
    open-source estimate runs anywhere, so it goes to the CPU partition (JETFM_SLURM_PARTITION_CPU, default
    cpu)."""
    if config["fpga"]["synthesis"]["vendor"]:
        return os.environ.get("JETFM_SLURM_PARTITION_FPGA") or "fpga"
    return os.environ.get("JETFM_SLURM_PARTITION_CPU") or "cpu"
