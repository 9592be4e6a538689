"""Fine-tuning a pretrained ParT backbone on a labelled fraction, and `load_backbone` (the one loader).

Methods (the baseline shares everything but the initialisation):
- `full`: the classifier starts from the pretrained backbone and trains all of it; the backbone may get a
  lower learning rate (`backbone_lr_scale` x lr, through the objective's optimiser groups);
- `frozen`: a linear probe; the backbone's weights stay bit-identical and it runs in eval mode;
- scratch (no checkpoint): the same architecture re-initialised, with the same steps, schedule and jets.
The labelled jets are those of `jetfm.finetune.labelled` at the run's fraction, the same for every method.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jetfm.finetune.backbone import BackboneSpec, check_inputs, particle_feature_names, read_backbone
from jetfm.finetune.labelled import LabelledStream
from jetfm.finetune.schedule import (
    PREDICTIONS,
    FreezeSchedule,
    layerwise_scales,
    restore_best,
    save_predictions,
)
from jetfm.models import build_model, make_size
from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig
from jetfm.train.data import ShardMeta
from jetfm.train.objectives import RunEnd, Supervised, decay_groups, to_device

MODES = ("full", "frozen")
# Size fields that do not change a parameter's shape or meaning (regularisation only).
SHAPE_NEUTRAL = frozenset({"dropout", "attn_dropout"})


def _backbone_of(module: nn.Module) -> nn.Module:
    from jetfm.models import ParTBackbone

    if isinstance(module, ParTBackbone):
        return module
    backbone = getattr(module, "backbone", None)
    if not isinstance(backbone, ParTBackbone):
        raise TypeError(
            f"{type(module).__name__} has no ParT backbone (expected a ParTBackbone or .backbone)"
        )
    return backbone


def load_backbone(module: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load the ParT backbone weights of checkpoint `path` into `module` (a `ParTBackbone`, or any module with
    a `.backbone`: the ParT classifier, an MPM or contrastive model). Works with every jetfm checkpoint of a
    ParT: pretraining (MPM, RS3L), fine-tuning or supervised training.

    Raises ValueError naming the difference when the checkpoint's ParT size or number of input features
    differs from the module's, or when a tensor's shape does not match. Returns what was loaded (path, step,
    objective, size) for provenance.
    """
    backbone = _backbone_of(module)
    ckpt = load_checkpoint(path)
    config = ckpt["config"]
    if config.get("model") != "part":
        raise ValueError(f"checkpoint {path} holds a {config.get('model')!r} model, not a ParT backbone")
    saved = make_size("part", config.get("size"))
    diff = [
        f"{k}: checkpoint {getattr(saved, k)!r}, module {getattr(backbone.size, k)!r}"
        for k in saved.__dataclass_fields__
        if k not in SHAPE_NEUTRAL and getattr(saved, k) != getattr(backbone.size, k)
    ]
    n_features = backbone.embed.net[1].in_features
    if ckpt.get("num_features") not in (None, n_features):
        diff.append(f"num_features: checkpoint {ckpt['num_features']}, module {n_features}")
    if diff:
        raise ValueError(f"checkpoint {path}: ParT backbone does not match the module: " + "; ".join(diff))
    state = {k.removeprefix("backbone."): v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    if not state:
        raise ValueError(
            f"checkpoint {path} has no 'backbone.*' weights (keys: {sorted(ckpt['model'])[:5]}...)"
        )
    own = backbone.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path}: backbone keys differ: missing {missing}, unexpected {unexpected}"
        )
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise ValueError(
                f"checkpoint {path}: backbone tensor {k!r} has shape {tuple(v.shape)}, module expects "
                f"{tuple(own[k].shape)}"
            )
    backbone.load_state_dict(state)
    return {
        "path": str(path), "step": int(ckpt["step"]),
        "objective": ckpt.get("objective", {"name": "supervised"}),
        "size": json.loads(json.dumps(config.get("size"))),
    }  # fmt: skip


def load_state(module: nn.Module, spec: BackboneSpec) -> dict[str, Any]:
    """Load the weights of `spec` into the module's backbone (built with spec's size); what was loaded."""
    backbone = _backbone_of(module)
    own = backbone.state_dict()
    missing, unexpected = sorted(set(own) - set(spec.state)), sorted(set(spec.state) - set(own))
    if missing or unexpected:
        raise ValueError(f"backbone {spec.path}: keys differ: missing {missing}, unexpected {unexpected}")
    for k, v in spec.state.items():
        if v.shape != own[k].shape:
            raise ValueError(
                f"backbone {spec.path}: tensor {k!r} has shape {tuple(v.shape)}, module expects "
                f"{tuple(own[k].shape)}"
            )
    backbone.load_state_dict(spec.state)
    return spec.describe()


class FineTune(Supervised):
    """Supervised ParT on the labelled fraction, from a pretrained backbone (`backbone`) or from scratch.

    Options of the comparison protocol (docs/foundation-model.md), all off by default so other stages that
    reuse this objective (scaling cells, the jet-images study) keep their behaviour:
    - `size_from_backbone`: build the ParT with the backbone file's size (an export or a checkpoint;
      `jetfm finetune --from`), only the shape-neutral dropout coming from the run; the data's particle
      features are checked against the backbone's (`backbone.check_inputs`) before anything trains;
    - `layer_decay`: layer-wise LR decay, the head at lr x 1, each backbone level below x `layer_decay` more
      (`schedule.layerwise_scales`), on top of `backbone_lr_scale`;
    - `freeze_steps`: the backbone is frozen (no gradient, eval mode) for the first optimiser steps, then
      trains (`schedule.FreezeSchedule`, a counter in the model's state so a resumed run continues it);
    - `subset`: which labelled subset of the fraction (one per seed; `labelled.labelled_selection`);
    - `select_best`: the loop keeps the best-validation weights (best.pt) and the test metrics are those
      of the best-validation step (model selection on validation; the run itself goes to max_steps);
    - `dropout`: the run's dropout (a validation-sweep knob), whatever the backbone was pretrained with.
    """

    name = "finetune"

    def __init__(
        self,
        method: str,
        fraction: float,
        backbone: str | Path | None = None,
        mode: str = "full",
        backbone_lr_scale: float = 1.0,
        label_smoothing: float = 0.0,
        *,
        size_from_backbone: bool = False,
        layer_decay: float = 1.0,
        freeze_steps: int = 0,
        subset: int = 0,
        select_best: bool = False,
        dropout: float | None = None,
    ) -> None:
        super().__init__(label_smoothing)
        if mode not in MODES:
            raise ValueError(f"finetune mode must be one of {MODES}, got {mode!r}")
        if mode == "frozen" and backbone is None:
            raise ValueError(f"finetune method {method!r}: a frozen backbone needs a pretrained checkpoint")
        if backbone_lr_scale <= 0:
            raise ValueError(f"finetune backbone_lr_scale must be > 0, got {backbone_lr_scale}")
        if not 0 < layer_decay <= 1:
            raise ValueError(f"finetune.layer_decay must be in (0, 1], got {layer_decay}")
        if freeze_steps < 0:
            raise ValueError(f"finetune.freeze_steps must be >= 0, got {freeze_steps}")
        self.method, self.fraction, self.mode = method, float(fraction), mode
        self.backbone = str(backbone) if backbone else None
        self.backbone_lr_scale = backbone_lr_scale
        self.size_from_backbone, self.layer_decay = size_from_backbone, float(layer_decay)
        self.freeze = FreezeSchedule(freeze_steps) if freeze_steps and backbone else None
        self.subset, self.dropout = int(subset), dropout
        self.best_metric = ("val_loss", "min") if select_best else None
        self.spec: BackboneSpec | None = None
        self.loaded: dict[str, Any] | None = None
        self.labelled_jets = 0
        self.adapter: dict[str, Any] | None = None

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        if cfg.model != "part":
            raise ValueError(f"fine-tuning needs the ParT backbone (train.model = 'part'), got {cfg.model!r}")
        size = dict(cfg.size)
        if self.backbone and self.size_from_backbone:
            self.spec = read_backbone(self.backbone)
            names = particle_feature_names(meta.feature_names, meta.num_features)
            check_inputs(self.spec, names, meta.num_features, list(self.data_files))
            size = {k: v for k, v in self.spec.size.items() if k not in SHAPE_NEUTRAL}
            size.update({k: v for k, v in cfg.size.items() if k in SHAPE_NEUTRAL})
        if self.dropout is not None:
            size["dropout"] = self.dropout
        model = build_model("part", meta.num_features, meta.num_jet_features, len(meta.classes), **size)
        if self.freeze is not None:
            self.freeze.attach(model, cfg.grad_accum)
        return model

    data_files: tuple[str, ...] = ()

    def stream(self, files: list[str], cfg: TrainConfig, rank: int, world_size: int) -> LabelledStream:
        self.data_files = tuple(files)
        stream = LabelledStream(
            files, cfg.batch_size, fraction=self.fraction, seed=cfg.seed, block_size=cfg.block_size,
            shuffle_buffer=cfg.shuffle_buffer, bucket_by_length=cfg.bucket_by_length,
            nominal_only=cfg.nominal_only, rank=rank, world_size=world_size, subset=self.subset,
        )  # fmt: skip
        self.labelled_jets = stream.rows
        return stream

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        if self.spec is not None:
            self.loaded = load_state(module, self.spec)
        elif self.backbone:
            self.loaded = load_backbone(module, self.backbone)
        if self.mode == "frozen":
            module.freeze_backbone()
        if self.freeze is not None:
            self.freeze.check_single_process()

    def param_groups(self, module: nn.Module, cfg: TrainConfig) -> list[dict]:
        scale = self.backbone_lr_scale if self.backbone and self.mode == "full" else 1.0
        scales = layerwise_scales(module.backbone, self.layer_decay if self.backbone else 1.0, scale)
        return decay_groups(module, cfg, scales)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        if self.freeze is not None and self.freeze.frozen_now():
            b = to_device(batch, device)
            logits = self.freeze.head_only(b)
            return F.cross_entropy(logits.float(), b["label"], label_smoothing=self.label_smoothing)
        return super().loss(model, batch, device)

    def finish(self, module: nn.Module, end: RunEnd) -> dict[str, Any] | None:
        """Supervised test metrics (of the best-validation weights with `select_best`) plus the method,
        labelled fraction, subset and jets, the hyperparameters and the loaded backbone."""
        cfg = end.cfg
        best = restore_best(module, end.out) if self.best_metric else None
        dropout = module.backbone.size.dropout if hasattr(module, "backbone") else None
        tags = {
            "method": self.method, "mode": self.mode, "labelled_fraction": self.fraction,
            "labelled_jets": self.labelled_jets, "seed": cfg.seed, "subset": self.subset,
            "pretrained": self.loaded, "selected": best, "adapter": self.adapter,
            "classes": list(end.extras["classes"]),
            "hyperparameters": {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "max_steps": cfg.max_steps,
                                "dropout": dropout,
                                "layer_decay": self.layer_decay, "backbone_lr_scale": self.backbone_lr_scale,
                                "freeze_steps": self.freeze.steps if self.freeze else 0},
        }  # fmt: skip
        return super().finish(module, end.with_metrics(tags))

    def report(
        self, metrics: dict[str, Any], probs: np.ndarray, labels: np.ndarray, classes: list[str],
        cfg: TrainConfig, out: Path,
    ) -> None:  # fmt: skip
        """As supervised, plus the per-jet test predictions (for the bootstrap over test jets)."""
        super().report(metrics, probs, labels, classes, cfg, out)
        save_predictions(out / PREDICTIONS, probs, labels)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "method": self.method, "fraction": self.fraction, "mode": self.mode,
            "backbone": self.backbone, "backbone_lr_scale": self.backbone_lr_scale,
            **({"layer_decay": self.layer_decay} if self.layer_decay != 1 else {}),
            **({"freeze_steps": self.freeze.steps} if self.freeze else {}),
            **({"subset": self.subset} if self.subset else {}),
            **({"select_best": True} if self.best_metric else {}),
            **({"dropout": self.dropout} if self.dropout is not None else {}),
            **({"size_from_backbone": True} if self.size_from_backbone else {}),
        }  # fmt: skip
