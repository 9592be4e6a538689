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


# --- Every objective through the one loop, under torchrun (2 ranks) or as one process --------------------

B = 16  # per-rank batch = HDF5 chunk = read block, with shuffle_buffer 0: rank r's batch k is block
# perm[2k + r], one process's batch k (2B) is blocks perm[2k], perm[2k+1]: the same jets in both runs.
STEPS = 20


def objective_config(name: str):
    from jetfm.train.config import TrainConfig

    return TrainConfig(
        model="mlp" if name == "distill" else "part", size={"preset": "tiny", "dropout": 0.0},
        batch_size=2 * B, max_steps=STEPS, warmup_steps=2, eval_every=10, checkpoint_every=STEPS,
        log_every=1, progress=False, shuffle_buffer=0, block_size=B, threads=1, eval_batches=0,
        eval_batch_size=48, seed=3,
    )  # fmt: skip


def make_objective(name: str, teacher: str):
    from jetfm.finetune.objective import FineTune
    from jetfm.fpga.distill import Distill
    from jetfm.pretrain.objectives import (
        ContrastiveObjective,
        MaskedParticleObjective,
        MPMSettings,
        RS3LSettings,
        TokenizerObjective,
    )
    from jetfm.train.objectives import Supervised

    return {
        "supervised": lambda: Supervised(),
        "finetune": lambda: FineTune("scratch", 1.0),
        "mpm": lambda: MaskedParticleObjective(MPMSettings(mask_fraction=0.3)),
        "tokenizer": lambda: TokenizerObjective(codebook_size=16, latent_dim=4, hidden=16),
        "distill": lambda: Distill("jet_mlp", teacher, size={"dims": [16]}),
        "rs3l": lambda: ContrastiveObjective(RS3LSettings(events_per_batch=8, projection_dim=8)),
    }[name]()


def run_objectives(spec_path: str) -> None:
    """Train every objective of the spec (JSON: files, views, teacher, out, names) into out/<name>."""
    import json

    from jetfm.train.loop import train

    spec = json.loads(Path(spec_path).read_text())
    for name in spec["names"]:
        files = spec["views"] if name == "rs3l" else spec["files"]
        train(objective_config(name), files["train"], files["val"], files["test"],
              Path(spec["out"]) / name, objective=make_objective(name, spec["teacher"]))  # fmt: skip


def uneven_rank(rank: int, world: int, port: int, files: dict[str, list[str]], out: str) -> None:
    """One rank of a supervised run whose ranks hold different numbers of batches per epoch."""
    import os

    from jetfm.train.loop import train

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})  # fmt: skip
    cfg = objective_config("supervised").replace(max_steps=5, eval_every=5, checkpoint_every=5)
    train(cfg, files["train"], files["val"], None, out)


def launch_training(spec_path: str) -> None:
    """As a rule's script does: `run_training` on the config's train.gpus ranks through the launcher, a stop
    for a retry becoming exit status 75 (spec JSON: config, files, out)."""
    import json

    from jetfm.train import launch
    from jetfm.train.signals import exit_for_retry

    spec = json.loads(Path(spec_path).read_text())
    kwargs = {"config": spec["config"], "model": "part", "files": spec["files"], "out_dir": spec["out"],
              "overrides": {"progress": False, "threads": 1}, "resume": "auto"}  # fmt: skip
    with exit_for_retry():
        launch.run("jetfm.train.run:run_training", kwargs, spec["config"], "train", spec["out"])


if __name__ == "__main__":
    import sys

    {"objectives": run_objectives, "launch": launch_training}[sys.argv[1]](sys.argv[2])
