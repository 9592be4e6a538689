"""DDP setup from the environment: the same script runs under `torchrun` or Slurm's `srun`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. Under `srun` (one task per GPU or
per CPU slot) the rank comes from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and the master is the first host
of SLURM_JOB_NODELIST, on a port derived from the job id so two jobs sharing a node do not collide.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from typing import Any

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    nodes: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """First hostname of a Slurm nodelist ('gpu[03-05,07],cpu01' -> 'gpu03'); scontrol when available."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    head = re.split(r",(?![^\[]*\])", nodelist)[0]
    m = re.fullmatch(r"([^\[]+)\[([^\]]+)\](.*)", head)
    if not m:
        return head
    first = re.split(r"[,-]", m.group(2))[0]
    return f"{m.group(1)}{first}{m.group(3)}"


def env_from_environ(environ: dict[str, str] | None = None) -> DistEnv:
    """Rank, world size, local rank and rendezvous address from torchrun or Slurm variables."""
    env = dict(os.environ if environ is None else environ)
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
        nodes = max(1, world // max(1, int(env.get("LOCAL_WORLD_SIZE") or world)))
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local = int(env.get("SLURM_LOCALID", 0))
        nodes = int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    else:
        return DistEnv()
    addr = env.get("MASTER_ADDR") or (
        first_host(env["SLURM_JOB_NODELIST"]) if "SLURM_JOB_NODELIST" in env else "127.0.0.1"
    )
    port = int(env.get("MASTER_PORT") or 20000 + int(env.get("SLURM_JOB_ID", "9500")) % 20000)
    if not 0 <= rank < world:
        raise ValueError(
            f"rank {rank} outside world size {world} (check RANK/WORLD_SIZE or SLURM_* variables)"
        )
    return DistEnv(rank, world, local, addr, port, nodes)


# Small host-side agreements between ranks (a stop signal, the end of an epoch) go through a gloo group on
# GPUs: a NCCL all_reduce of a flag would wait for every kernel queued on the GPU and stall the host once
# per batch; on the CPU the default (gloo) group serves.
_control: Any = None


def setup(device: str) -> tuple[DistEnv, torch.device]:
    """Initialise the process group if launched with >1 ranks (gloo on CPU, nccl on GPU); refuse to run on
    the CPU when the job was given GPUs that torch cannot see (`train/device.py`)."""
    from jetfm.train.device import check_device

    env = env_from_environ()
    check_device(device)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(env.local_rank % max(torch.cuda.device_count(), 1))
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if env.distributed and not dist.is_initialized():
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = env.master_addr, str(env.master_port)
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            init_method="env://",
            rank=env.rank,
            world_size=env.world_size,
        )
        global _control  # one per process, made by every rank right after the default group
        _control = dist.new_group(backend="gloo") if use_cuda else None
    return env, dev


def rank_batch(global_batch: int, world_size: int) -> int:
    """Jets per micro-batch on one rank: the global batch split evenly (a remainder would make the ranks'
    batches, and the result, depend on the GPU count)."""
    if global_batch % world_size:
        raise ValueError(
            f"train.batch_size = {global_batch} (jets per micro-batch, all ranks together) is not divisible "
            f"by the {world_size} ranks; choose a multiple of {world_size}"
        )
    return global_batch // world_size


def all_gather(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's `obj` (picklable) on every rank; [obj] without DDP."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(value: float, env: DistEnv) -> float:
    if not env.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, group=_control)
    return float(t.item()) / env.world_size


def any_rank(flags: list[bool], env: DistEnv) -> list[bool]:
    """Element-wise OR of `flags` over the ranks (the flags themselves without DDP)."""
    if not env.distributed:
        return list(flags)
    t = torch.tensor([float(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return [bool(x) for x in t.tolist()]


def global_count(count: torch.Tensor | float, device: torch.device | None = None) -> torch.Tensor:
    """The divisor that turns this rank's sum over items into its share of the mean over the global batch:
    the item count summed over ranks, divided by the W ranks (float64 scalar; `count` itself without DDP).

    DDP averages gradients over the W ranks; a loss that is a mean over items (particles, anchors) whose
    count differs between ranks would then weigh each rank's items by 1/(W x its count). total / this on
    every rank makes that average the gradient of sum(totals) / sum(counts): the loss of one process on the
    concatenated batch, and the ranks' mean of the values is that loss too. One all-reduce of one number."""
    n = torch.as_tensor(count, dtype=torch.float64, device=device).detach().reshape(1).clone()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return n[0]
    dist.all_reduce(n)
    return n[0] / dist.get_world_size()


def global_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """A per-item mean over the global batch from this rank's sum and item count, as DDP needs it
    (`global_count`); without DDP: total / count."""
    return total / global_count(count, total.device).to(total.dtype)


def sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm layers (the CNN's) as SyncBatchNorm when DDP runs on GPUs (NCCL): batch statistics over the
    global batch, as one process computes them; DDP alone normalises each rank's share by its own statistics,
    so N ranks would train another model than one process at the same global batch. torch has no
    SyncBatchNorm on the CPU (gloo): there each rank keeps its own statistics. Same parameter and buffer
    names: checkpoints load either way. Models without BatchNorm are returned as they are."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return module
    if dist.get_backend() != "nccl":
        return module
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
