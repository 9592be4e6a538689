"""The training loop: one flat function in the spirit of nanoGPT's train.py.

Set the LR, accumulate micro-batches (DDP syncs gradients on the last one only), clip, step, log; evaluate
and checkpoint on rank 0; stop at max_steps. The same code runs on 1 CPU process, under torchrun or srun.
What is optimised is an `Objective` (`train/objectives.py`): supervised classification by default;
pretraining, fine-tuning and distillation plug in their own model, data stream, loss, validation and outputs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from jetfm.atomic import write_text_atomic
from jetfm.provenance import make_provenance
from jetfm.train import ddp, signals
from jetfm.train import device as devices
from jetfm.train.checkpoint import BestCheckpoint, rng_state, save_checkpoint, set_rng_state
from jetfm.train.config import TrainConfig
from jetfm.train.data import make_loader, read_meta
from jetfm.train.guard import guarded_run
from jetfm.train.numerics import check_finite
from jetfm.train.objectives import Objective, RunEnd, Supervised, decay_groups
from jetfm.train.plots import plot_loss
from jetfm.train.progress import ProgressLog
from jetfm.train.resume import ResumeMode, discard_resume_copy, keep_for_resume, resume_checkpoint

# History columns of every run; an objective's validation columns go between these and the last two.
HISTORY_COLUMNS = ("step", "epoch", "lr", "train_loss", "grad_norm", "jets", "time_s")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, groups: list[dict] | None = None
) -> torch.optim.Optimizer:
    """Fused AdamW over `groups` (default: weight decay on matrices only, see `objectives.decay_groups`)."""
    groups = groups if groups is not None else decay_groups(model, cfg)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def history_columns(objective: Objective) -> tuple[str, ...]:
    return (*HISTORY_COLUMNS[:5], *objective.history_columns, *HISTORY_COLUMNS[5:])


def write_history(path: Path, history: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in columns})
    write_text_atomic(path, buf.getvalue())


def run_shape(
    cfg: TrainConfig, rank_cfg: TrainConfig, env: ddp.DistEnv, device: torch.device
) -> dict[str, Any]:
    """How the run was spread (metrics.json): ranks, nodes, jets per optimiser step and per rank."""
    return {
        "world_size": env.world_size, "nodes": env.nodes, "device": str(device.type),
        "global_batch": cfg.batch_size * cfg.grad_accum, "per_rank_batch": rank_cfg.batch_size,
        "grad_accum": cfg.grad_accum,
    }  # fmt: skip


@guarded_run  # run-directory lock, stale temporaries removed, SIGTERM/SIGUSR1 recorded (train/guard.py)
def train(
    cfg: TrainConfig,
    train_files: list[str],
    val_files: list[str],
    test_files: list[str] | None,
    out_dir: str | Path,
    *,
    resume: ResumeMode = False,
    workflow_config: dict[str, Any] | None = None,
    objective: Objective | None = None,
) -> dict[str, Any]:
    """Optimise `objective` (default: supervised `cfg.model`) on the shards; write checkpoint.pt, history.csv,
    loss.png and the objective's outputs (supervised: metrics.json, ROC, confusion) to out_dir."""
    t_start = time.time()
    objective = objective or Supervised(cfg.label_smoothing)
    out = Path(out_dir)
    ckpt_path = out / "checkpoint.pt"
    env, device = ddp.setup(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    if env.is_main:  # the log's first line: what this run really runs on
        print(devices.describe(device, bf16, env.world_size, env.nodes), flush=True)
    # cfg.batch_size is the global micro-batch (all ranks): the result does not depend on the GPU count.
    rank_cfg = cfg.replace(batch_size=ddp.rank_batch(cfg.batch_size, env.world_size))

    # Same init on every rank (DDP also broadcasts it); dropout and the like then get per-rank streams.
    torch.manual_seed(cfg.seed)
    train_stream = objective.stream(train_files, rank_cfg, env.rank, env.world_size)
    meta = train_stream.meta
    # val/test shards agree with train (features, names, classes) before any work, else the file is named
    read_meta([train_files[0], *val_files, *(test_files or [])])
    model = objective.build(cfg, meta)
    columns = history_columns(objective)  # after build: MPM's heads come from the shards' features
    objective.prepare(model, train_files, cfg)
    model.to(device)
    optimizer = make_optimizer(model, cfg, objective.param_groups(model, cfg))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg) / cfg.lr)
    torch.manual_seed(cfg.seed + 1 + env.rank)
    np.random.seed((cfg.seed + env.rank) % 2**32)  # noqa: NPY002 - seed the global RNG libraries use
    random.seed(cfg.seed + env.rank)

    step, epoch, batch_in_epoch, jets = 0, 0, 0, 0
    history: list[dict[str, Any]] = []
    ckpt = resume_checkpoint(
        ckpt_path, cfg, env.world_size, resume, verbose=env.is_main, objective=objective.describe()
    )
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, history = int(ckpt["step"]), list(ckpt["history"])
        mine = ckpt["ranks"][env.rank]
        epoch, batch_in_epoch, jets = int(mine["epoch"]), int(mine["batch_in_epoch"]), int(ckpt["jets"])
        set_rng_state(mine["rng"])
        if env.is_main:
            print(f"resumed {ckpt_path} at step {step} (epoch {epoch}, batch {batch_in_epoch})", flush=True)

    # best-validation weights (best.pt) for objectives with a `best_metric` (fine-tuning arms)
    best = BestCheckpoint.for_objective(out, objective, fresh=ckpt is None) if env.is_main else None

    raw_model = model
    if cfg.compile:
        model = torch.compile(model, mode=cfg.compile if isinstance(cfg.compile, str) else None)
    if env.distributed:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    position = {"epoch": epoch, "batch_in_epoch": batch_in_epoch}

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        """Endless epochs; replays (reads, no compute) the current epoch up to the saved position.

        Ranks can hold a different number of batches in an epoch (their blocks differ in usable rows): all
        end the epoch at the batch where the first of them runs out (one look-ahead batch and a tiny
        all-reduce per batch), so they stay in the same epoch, see each jet at most once per epoch and
        never wait in a collective for a rank that moved on."""
        skip = position["batch_in_epoch"]
        while True:
            train_stream.epoch = position["epoch"]
            loader = iter(make_loader(train_stream, cfg.num_workers, pin_memory=device.type == "cuda"))
            ahead = next(loader, None)
            n = 0
            while True:
                batch, ahead = ahead, next(loader, None) if ahead is not None else None
                none_now, none_next = ddp.any_rank([batch is None, ahead is None], env)
                if none_now:
                    break
                n += 1
                if n > skip:
                    position["batch_in_epoch"] = n
                    yield batch
                if none_next:
                    break
            if n == 0:
                raise RuntimeError(
                    f"a rank got no batch of {rank_cfg.batch_size} jets from {train_files}: too little data "
                    f"for this batch size and {env.world_size} rank(s) (ranks split an epoch by blocks of "
                    f"train.block_size = {cfg.block_size} rows, whole HDF5 chunks: lower it, the batch size "
                    "or the number of ranks)"
                )
            skip = 0
            position["epoch"] += 1
            position["batch_in_epoch"] = 0

    def save() -> None:
        ranks = ddp.all_gather({**position, "rng": rng_state()}, env)
        if env.is_main:
            save_checkpoint(ckpt_path, {
                "config": cfg.to_dict(), "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "jets": jets, "ranks": ranks,
                "objective": objective.describe(),
                "history": history, "world_size": env.world_size, "classes": list(meta.classes),
                "num_features": meta.num_features, "num_jet_features": meta.num_jet_features,
            })  # fmt: skip
            keep_for_resume(ckpt_path)  # survives Snakemake deleting checkpoint.pt (train/resume.py)
            write_history(out / "history.csv", history, columns)
        ddp.barrier(env)

    stream = batches()
    model.train()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (cfg.progress and env.is_main), desc=cfg.model)
    t_last = time.time()
    progress = ProgressLog(step, cfg.max_steps, jets)
    while step < cfg.max_steps:
        losses = []
        for micro in range(cfg.grad_accum):
            batch = next(stream)
            sync = not env.distributed or micro == cfg.grad_accum - 1
            with contextlib.nullcontext() if sync else model.no_sync(), autocast:
                loss = objective.loss(model, batch, device)
                (loss / cfg.grad_accum).backward()  # inside no_sync: only the last micro-batch all-reduces
            losses.append(loss.detach().float())
            jets += len(batch["label"]) * env.world_size
        grad_norm = torch.nn.utils.clip_grad_norm_(
            raw_model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        # The step's one host synchronisation: loss and gradient norm come back together, after the
        # backward pass has been queued (a GPU stays busy; per-micro-batch `.item()` would stall it).
        loss_sum, norm = torch.stack([torch.stack(losses).mean(), grad_norm.float().to(device)]).tolist()
        check_finite(step + 1, loss_sum, norm, ckpt_path)  # stop before a NaN reaches the weights
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)

        last = step == cfg.max_steps
        evaluating = step % cfg.eval_every == 0 or last or step in cfg.eval_at
        if step % cfg.log_every == 0 or evaluating:
            row: dict[str, Any] = {
                "step": step, "epoch": position["epoch"], "lr": f"{scheduler.get_last_lr()[0]:.6g}",
                "train_loss": f"{ddp.mean_over_ranks(loss_sum, env):.6f}",
                "grad_norm": f"{norm:.4f}",
                "jets": jets, "time_s": f"{time.time() - t_last:.2f}",
            }  # fmt: skip
            if evaluating:
                if env.is_main or objective.gathers_evaluation:  # all ranks share it, rank 0 gets the numbers
                    val = objective.evaluate(raw_model, val_files, cfg, device)
                if env.is_main:
                    row.update({k: f"{v:.6f}" for k, v in val.items()})
                    if best is not None:
                        best.update(val, raw_model, step)
                    bar.set_postfix(train=row["train_loss"], val=row.get("val_loss"))
                ddp.barrier(env)
            history.append(row)
            t_last = time.time()
            if env.is_main and not cfg.progress:  # logs (Snakemake, Slurm) get a line instead of the bar
                print(progress.line(step, jets, row["train_loss"], row.get("val_loss")), flush=True)
        saved = step % cfg.checkpoint_every == 0 or last
        if saved:
            save()
        stop = signals.requested()  # SIGTERM/SIGUSR1 (train/signals.py); under DDP all ranks stop together
        if env.distributed and ddp.mean_over_ranks(float(stop is not None), env) > 0:
            stop = stop or "a stop signal on another rank"
        if stop and not last:
            if not saved:
                save()
            raise signals.StopRequested(stop, step, str(ckpt_path))
    bar.close()

    result: dict[str, Any] = {"step": step}
    if env.is_main:
        write_history(out / "history.csv", history, columns)
        plot_loss(history, out / "loss.png", title=f"{cfg.model} ({objective.name}): loss")
    if env.is_main or objective.gathers_evaluation:  # the test pass is shared too; rank 0 alone writes
        provenance = make_provenance(
            "train", workflow_config or {}, cfg.seed,
            counts={"train_rows": train_stream.rows, "world_size": env.world_size},
            wall_time_s=time.time() - t_start, train_config=cfg.to_dict(), objective=objective.describe(),
            inputs={"train": train_files, "val": val_files, "test": test_files},
        )  # fmt: skip
        extras = {
            "classes": list(meta.classes),
            "provenance": provenance,
            "metrics": {"steps": step, "jets_seen": jets, **run_shape(cfg, rank_cfg, env, device),
                        "provenance": provenance},
        }  # fmt: skip
        metrics = objective.finish(raw_model, RunEnd(test_files, cfg, device, out, extras))
        if metrics is not None and env.is_main:
            result["metrics"] = metrics
    if env.is_main:
        discard_resume_copy(ckpt_path)  # finished: a rerun (new config, --forcerun) must not resume it
    ddp.barrier(env)
    return result
