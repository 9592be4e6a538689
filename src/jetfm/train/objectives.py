"""Pluggable training objectives: what the one training loop (`train/loop.py`) optimises.

The loop owns everything every objective shares (DDP, precision, gradient accumulation, clipping, LR schedule,
checkpoints and exact resume, history, progress, provenance). An `Objective` owns what differs:

- `build(cfg, meta)`: the trainable module (a classifier; a backbone with a decoder; a student...). Its
  `state_dict()` is what the checkpoint stores under "model".
- `prepare(module, train_files, cfg)`: anything done once before the optimiser exists (fit input scalings,
  load pretrained weights, freeze parameters).
- `param_groups(module, cfg)`: optimiser groups (weight decay on matrices only; objectives may scale the
  learning rate of some parameters, e.g. a pretrained backbone).
- `stream(files, cfg, rank, world_size)`: the training data stream (supervised: nominal jets; contrastive:
  batches of events with all their views).
- `loss(model, batch, device)`: the scalar loss of one micro-batch. `model` may be the DDP / compiled wrapper,
  so call it (never `model.module...`) for gradients to be synchronised.
- `evaluate(module, val_files, cfg, device)`: validation numbers for the history (`history_columns`).
- `finish(module, test_files, cfg, device, out, extras)`: final outputs of the run (metrics.json, figures)
  written by rank 0; returns the metrics dict or None.
- `gathers_evaluation`: False (default): the loop calls `evaluate` and `finish` on rank 0 only, which reads
  the whole split. True: every rank calls them, each predicts its part of the split and rank 0 gathers the
  predictions (`predict`) and alone writes files (supervised objectives: N ranks evaluate N times faster).
- `describe()`: the objective's settings; stored in the checkpoint and compared on resume.

Supervised classification is the first objective; pretraining (masked particles, RS3L contrastive),
fine-tuning and distillation are others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from jetfm.atomic import write_json_atomic
from jetfm.models import build_model, count_parameters, flops_per_jet
from jetfm.preprocess.sample import sample_rows
from jetfm.train.config import TrainConfig
from jetfm.train.data import H5JetStream, ShardMeta, make_loader, mean_particles
from jetfm.train.ddp import sync_batchnorm
from jetfm.train.metrics import classification_metrics
from jetfm.train.plots import plot_confusion, plot_roc

FIT_SAMPLE_ROWS = 200_000  # jets sampled to fit input scalings (bounded at any dataset size)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def classify(model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Logits of a registry model (same call signature for every model) on a batch moved to `device`."""
    b = to_device(batch, device)
    return model(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])


def decay_groups(module: nn.Module, cfg: TrainConfig, lr_scale: dict[int, float] | None = None) -> list[dict]:
    """AdamW groups: weight decay on matrices only (biases, norms, head scales and tokens are not decayed).

    `lr_scale` maps id(parameter) -> factor on cfg.lr (default 1); frozen parameters are left out.
    """
    lr_scale = lr_scale or {}
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for p in module.parameters():
        if not p.requires_grad:
            continue
        decay = p.dim() >= 2 and p.shape[0] > 1
        groups.setdefault((decay, lr_scale.get(id(p), 1.0)), []).append(p)
    return [
        {"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": cfg.lr * scale}
        for (decay, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))
    ]


def is_main_rank() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@torch.no_grad()
def predict(
    model: nn.Module, paths: list[str], cfg: TrainConfig, device: torch.device, max_batches: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and labels over a split (no shuffling, nothing dropped).

    Under DDP every rank must call it: rank r of W predicts the read blocks r, r+W, ... (at most
    max_batches / W batches each) and all ranks get every rank's predictions, concatenated. The metrics
    computed from them do not depend on the order, so with max_batches 0 they equal one process's."""
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    rank = dist.get_rank() if world > 1 else 0
    stream = H5JetStream(
        paths, cfg.eval_batch_size, shuffle=False, block_size=cfg.block_size, nominal_only=cfg.nominal_only,
        drop_last=False, rank=rank, world_size=world,
    )  # fmt: skip
    limit = -(-max_batches // world) if max_batches else 0
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for i, batch in enumerate(make_loader(stream)):
        if limit and i >= limit:
            break
        probs.append(torch.softmax(classify(model, batch, device).float(), dim=-1).cpu().numpy())
        labels.append(batch["label"].numpy())
    model.train(was_training)
    if world > 1:  # a rank whose share of a small split is empty sends nothing
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, (probs, labels))
        probs, labels = [p for ps, _ in parts for p in ps], [y for _, ys in parts for y in ys]
    return np.concatenate(probs), np.concatenate(labels)


@dataclass(frozen=True)
class RunEnd:
    """What the loop hands an objective once training has ended: the test files, the run's config, device and
    directory, and `extras` (classes, provenance, and `metrics`: the run's own fields for metrics.json)."""

    test_files: list[str] | None
    cfg: TrainConfig
    device: torch.device
    out: Path
    extras: dict[str, Any]

    def with_metrics(self, fields: dict[str, Any]) -> RunEnd:
        """The same end with more fields for the run's metrics (a subclass adds its own, then calls super)."""
        return replace(self, extras={**self.extras, "metrics": {**self.extras["metrics"], **fields}})


class Objective:
    """Base class: defaults shared by every objective (see the module docstring for the contract)."""

    name = "objective"
    history_columns: tuple[str, ...] = ("val_loss",)
    gathers_evaluation = False  # True: evaluate/finish run on every rank (see the module docstring)

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        raise NotImplementedError

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        """Nothing by default."""

    def param_groups(self, module: nn.Module, cfg: TrainConfig) -> list[dict]:
        return decay_groups(module, cfg)

    def stream(self, files: list[str], cfg: TrainConfig, rank: int, world_size: int) -> H5JetStream:
        return H5JetStream(
            files, cfg.batch_size, seed=cfg.seed, block_size=cfg.block_size,
            shuffle_buffer=cfg.shuffle_buffer, bucket_by_length=cfg.bucket_by_length,
            nominal_only=cfg.nominal_only, rank=rank, world_size=world_size,
        )  # fmt: skip

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(
        self, module: nn.Module, val_files: list[str], cfg: TrainConfig, device: torch.device
    ) -> dict[str, float]:
        return {}

    def finish(self, module: nn.Module, end: RunEnd) -> dict[str, Any] | None:
        """The run's final outputs (test metrics, metrics.json / summary.json) once training has ended."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class Supervised(Objective):
    """Classification of the nominal jets with cross-entropy (optionally label-smoothed)."""

    name = "supervised"
    history_columns = ("val_loss", "val_accuracy")
    gathers_evaluation = True  # predict() splits the split over the ranks and gathers

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        """The registry model; its BatchNorm layers (the CNN's) synchronised across GPU ranks."""
        model = build_model(
            cfg.model, meta.num_features, meta.num_jet_features, len(meta.classes), **cfg.size
        )
        return sync_batchnorm(model)

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        if hasattr(
            module, "fit_input"
        ):  # jet MLP: standardise inputs with training-set statistics (a sample)
            jets = sample_rows(train_files, ("jet_features",), FIT_SAMPLE_ROWS, cfg.nominal_only)[
                "jet_features"
            ]
            module.fit_input(torch.from_numpy(jets))

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        logits = classify(model, batch, device)
        labels = batch["label"].to(device)
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def evaluate(
        self, module: nn.Module, val_files: list[str], cfg: TrainConfig, device: torch.device
    ) -> dict[str, float]:
        probs, labels = predict(module, val_files, cfg, device, cfg.eval_batches)
        p = torch.from_numpy(probs).clamp_min(1e-12).log()
        return {
            "val_loss": F.nll_loss(p, torch.from_numpy(labels)).item(),
            "val_accuracy": float((probs.argmax(1) == labels).mean()),
        }

    def finish(self, module: nn.Module, end: RunEnd) -> dict[str, Any] | None:
        """Test metrics + `run_fields` + `end.extras` (provenance, counts) -> metrics.json, with `report`."""
        if not end.test_files:
            return None
        probs, labels = predict(module, end.test_files, end.cfg, end.device)
        if not is_main_rank():
            return None
        classes = list(end.extras["classes"])
        metrics = classification_metrics(probs, labels, classes)
        metrics.update(**self.run_fields(module, end.test_files, end.cfg), **end.extras.get("metrics", {}))
        self.report(metrics, probs, labels, classes, end.cfg, end.out)
        write_json_atomic(end.out / "metrics.json", metrics)
        return metrics

    def run_fields(self, module: nn.Module, test_files: list[str], cfg: TrainConfig) -> dict[str, Any]:
        """What metrics.json says about the run besides its test metrics: the model, its size and cost."""
        n_mean = mean_particles(test_files, cfg.nominal_only)
        return {
            "model": cfg.model, "objective": self.name, "parameters": count_parameters(module),
            "mean_particles": n_mean, "flops_per_jet": flops_per_jet(module, n_mean),
        }  # fmt: skip

    def report(
        self, metrics: dict[str, Any], probs: np.ndarray, labels: np.ndarray, classes: list[str],
        cfg: TrainConfig, out: Path,
    ) -> None:  # fmt: skip
        """The test-jet count in the provenance; ROC and confusion figures."""
        if "provenance" in metrics:
            metrics["provenance"]["counts"]["test_jets"] = len(labels)
        plot_roc(probs, labels, classes, out / "roc.png", title=f"{cfg.model}: X vs QCD")
        plot_confusion(
            metrics["confusion_matrix"], metrics["confusion_classes"], out / "confusion.png",
            title=f"{cfg.model}: test confusion",
        )  # fmt: skip
