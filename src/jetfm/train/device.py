"""Which device a training rank uses, and a refusal to train on the CPU when the job was given GPUs.

`make install` pins the CPU build of torch; on a cluster that build sees no GPU, and a job that Slurm gave
GPUs would silently train on the CPU for days. So a rank whose environment says GPUs were allocated
(SLURM_JOB_GPUS, SLURM_STEP_GPUS or CUDA_VISIBLE_DEVICES) while torch sees no CUDA device stops at once with
one line naming the torch build and the fix; `train.device: cpu` states that the CPU is meant.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

GPU_VARIABLES = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES")
INSTALL_HINT = "make install-cuda CUDA=cu128 (the CUDA build of the same torch version)"


def torch_build() -> str:
    """'torch 2.13.0+cpu (CPU-only build)' or 'torch 2.13.0+cu128 (CUDA 12.8)'."""
    cuda = torch.version.cuda
    return f"torch {torch.__version__} ({f'CUDA {cuda}' if cuda else 'CPU-only build'})"


def allocated_gpus(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(variable, value) of the first variable saying this process was given GPUs, else None."""
    env = os.environ if environ is None else environ
    for name in GPU_VARIABLES:
        value = env.get(name, "").strip()
        if value and value not in ("-1", "NoDevFiles"):
            return name, value
    return None


def check_device(requested: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise ValueError (one line) when `requested` cannot be honoured or GPUs would idle unseen."""
    if requested == "cpu" or torch.cuda.is_available():
        return
    if requested == "cuda":
        raise ValueError(
            f"train.device is cuda but torch sees no CUDA device ({torch_build()}); install the CUDA build: "
            f"{INSTALL_HINT}"
        )
    given = allocated_gpus(environ)
    if given:
        raise ValueError(
            f"this job was given GPUs ({given[0]}={given[1]}) but torch sees no CUDA device "
            f"({torch_build()}); install the CUDA build with {INSTALL_HINT}, or set train.device: cpu to "
            "train on the CPU on purpose"
        )


def describe(device: torch.device, bf16: bool, world_size: int, nodes: int) -> str:
    """The first line of every training log: device, dtype, world size and torch build."""
    name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    dtype = "bf16 autocast" if bf16 else "fp32"
    return (
        f"training: device {device}{name}, dtype {dtype}, world size {world_size} on {nodes} node(s), "
        f"{torch_build()}"
    )
