"""Rank bodies of the DDP tests, importable by the processes `torch.multiprocessing.spawn` starts."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from jetfm.pretrain.contrastive import ddp_nt_xent


def rs3l_rank(rank: int, world: int, init_file: str, out: str) -> None:
    """One rank's share of a fixed global batch of views through a linear projection: its loss and, after
    DDP's averaging of gradients over ranks, the projection's gradient, saved per rank."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        proj = torch.nn.Linear(6, 4)
        x, event = rs3l_batch()
        per = len(x) // world  # whole events per rank: rows are grouped by event, 3 views each
        mine = slice(rank * per, (rank + 1) * per)
        loss = ddp_nt_xent(proj(x[mine]), event[mine] - event[mine].min(), 0.2)
        loss.backward()
        for p in proj.parameters():  # what DistributedDataParallel does to every gradient
            dist.all_reduce(p.grad)
            p.grad /= world
        value = torch.tensor([loss.item()])
        dist.all_reduce(value)
        torch.save(
            {"loss": value.item() / world, "grads": [p.grad for p in proj.parameters()]},
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def rs3l_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """8 events x 3 views, the views of an event close to each other."""
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(8, 6, generator=g)
    x = centres.repeat_interleave(3, 0) + 0.3 * torch.randn(24, 6, generator=g)
    return x, torch.arange(8).repeat_interleave(3)
