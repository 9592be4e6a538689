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

import torch
from torch import nn

from jetfm.finetune.labelled import LabelledStream
from jetfm.models import build_model, make_size
from jetfm.train.checkpoint import load_checkpoint
from jetfm.train.config import TrainConfig
from jetfm.train.data import ShardMeta
from jetfm.train.objectives import Supervised, decay_groups

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


class FineTune(Supervised):
    """Supervised ParT on the labelled fraction, from a pretrained backbone (`backbone`) or from scratch."""

    name = "finetune"

    def __init__(
        self,
        method: str,
        fraction: float,
        backbone: str | Path | None = None,
        mode: str = "full",
        backbone_lr_scale: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(label_smoothing)
        if mode not in MODES:
            raise ValueError(f"finetune mode must be one of {MODES}, got {mode!r}")
        if mode == "frozen" and backbone is None:
            raise ValueError(f"finetune method {method!r}: a frozen backbone needs a pretrained checkpoint")
        if backbone_lr_scale <= 0:
            raise ValueError(f"finetune backbone_lr_scale must be > 0, got {backbone_lr_scale}")
        self.method, self.fraction, self.mode = method, float(fraction), mode
        self.backbone = str(backbone) if backbone else None
        self.backbone_lr_scale = backbone_lr_scale
        self.loaded: dict[str, Any] | None = None
        self.labelled_jets = 0

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        if cfg.model != "part":
            raise ValueError(f"fine-tuning needs the ParT backbone (train.model = 'part'), got {cfg.model!r}")
        return build_model("part", meta.num_features, meta.num_jet_features, len(meta.classes), **cfg.size)

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        if self.backbone:
            self.loaded = load_backbone(module, self.backbone)
        if self.mode == "frozen":
            module.freeze_backbone()

    def param_groups(self, module: nn.Module, cfg: TrainConfig) -> list[dict]:
        scale = self.backbone_lr_scale if self.backbone and self.mode == "full" else 1.0
        return decay_groups(module, cfg, {id(p): scale for p in module.backbone.parameters()})

    def stream(self, files: list[str], cfg: TrainConfig, rank: int, world_size: int) -> LabelledStream:
        stream = LabelledStream(
            files, cfg.batch_size, fraction=self.fraction, seed=cfg.seed, block_size=cfg.block_size,
            shuffle_buffer=cfg.shuffle_buffer, bucket_by_length=cfg.bucket_by_length,
            nominal_only=cfg.nominal_only, rank=rank, world_size=world_size,
        )  # fmt: skip
        self.labelled_jets = stream.rows
        return stream

    def finish(
        self,
        module: nn.Module,
        test_files: list[str] | None,
        cfg: TrainConfig,
        device: torch.device,
        out: Path,
        extras: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Supervised test metrics plus the method, labelled fraction and jets, and the loaded backbone."""
        tags = {
            "method": self.method, "mode": self.mode, "labelled_fraction": self.fraction,
            "labelled_jets": self.labelled_jets, "seed": cfg.seed, "pretrained": self.loaded,
        }  # fmt: skip
        return super().finish(
            module, test_files, cfg, device, out, {**extras, "metrics": {**extras["metrics"], **tags}}
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "method": self.method, "fraction": self.fraction, "mode": self.mode,
            "backbone": self.backbone, "backbone_lr_scale": self.backbone_lr_scale,
        }  # fmt: skip
