"""Initialise a CNN tagger from pre-trained weights: a jetfm CNN checkpoint (another task, class subset or
simulation setting) or a local file of torchvision ResNet weights. Nothing is ever downloaded.

Rules:
- every parameter and buffer of the model except the classifier head (`fc.*`) must come from the file with
  the same name and shape; the head is always the model's fresh one (the task differs). BatchNorm's
  `num_batches_tracked` may be absent (torchvision's published files lack it).
- torchvision files hold RGB filters (`conv1.weight` of shape (64, 3, k, k)); for C image channels they are
  adapted as timm's `adapt_input_conv` does: C = 1 sums the three filters; otherwise the RGB filters are
  repeated to C channels (R, G, B, R, ...) and scaled by 3 / C, keeping the filters' diversity and (exactly
  for C a multiple of 3) the first-layer response to a uniform input.
- a jetfm checkpoint is loaded as is: a different channel count is an error naming both shapes.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jetfm.finetune.objective import FineTune
from jetfm.models import make_size
from jetfm.models.cnn import JetCNN
from jetfm.train.checkpoint import FORMAT
from jetfm.train.config import TrainConfig
from jetfm.train.data import ShardMeta
from jetfm.train.objectives import Supervised, decay_groups

HEAD = "fc."
INPUT_CONV = "conv1.weight"


def read_pretrained(path: str | Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """(state dict, kind = 'jetfm' | 'torchvision', jetfm training config or {}) of a weights file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pre-trained weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / foreign files raise several types
        raise ValueError(f"pre-trained weights file {path} is unreadable: {exc}") from exc
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj["config"].get("model") != "cnn":
            raise ValueError(
                f"pre-trained checkpoint {path} holds a {obj['config'].get('model')!r} model, expected 'cnn'"
            )
        return dict(obj["model"]), "jetfm", dict(obj["config"])
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if INPUT_CONV not in obj:
            raise ValueError(
                f"pre-trained weights file {path} is a state dict without {INPUT_CONV!r}: not a torchvision "
                "ResNet state dict (keys conv1.weight, bn1.*, layer1.0.conv1.weight, ..., fc.weight)"
            )
        return dict(obj), "torchvision", {}
    raise ValueError(
        f"pre-trained weights file {path} is neither a {FORMAT} checkpoint nor a torchvision state dict "
        f"(found {type(obj).__name__})"
    )


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters (out, 3, k, k) -> (out, in_channels, k, k): sum for one channel, else repeat x 3 / C."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    repeats = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def _shape_error(path: Path, key: str, found: torch.Size, expected: torch.Size, model: JetCNN) -> ValueError:
    msg = f"pre-trained weights {path}: {key} has shape {tuple(found)}, the model expects {tuple(expected)}"
    if key == INPUT_CONV:
        msg += (
            f" (input channels {found[1]} vs {expected[1]}: the model's image channels are "
            f"{list(model.size.channels)}; use a checkpoint trained with the same channels)"
        )
    else:
        msg += " (a different CNN size: use the size the weights were trained with, e.g. preset resnet18)"
    return ValueError(msg)


def load_pretrained(model: JetCNN, path: str | Path) -> dict[str, Any]:
    """Copy the file's weights into `model` (all but the head) in place; returns what was done."""
    if not isinstance(model, JetCNN):
        raise TypeError(f"pre-trained image weights load into a JetCNN, not {type(model).__name__}")
    path = Path(path)
    state, kind, source_config = read_pretrained(path)
    target = model.state_dict()
    adapted = False
    if kind == "torchvision" and INPUT_CONV in target and state[INPUT_CONV].shape[1] == 3:
        wanted = target[INPUT_CONV].shape[1]
        adapted = wanted != 3
        state[INPUT_CONV] = adapt_input_conv(state[INPUT_CONV], wanted)
    body = [k for k in target if not k.startswith(HEAD)]
    missing = [k for k in body if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if not k.startswith(HEAD) and k not in target]
    if missing or extra:
        raise ValueError(
            f"pre-trained weights {path} do not fit the model (a different CNN size?): missing "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
            f"{' ...' if len(extra) > 5 else ''}"
        )
    for k in body:
        if k in state and state[k].shape != target[k].shape:
            raise _shape_error(path, k, state[k].shape, target[k].shape, model)
    with torch.no_grad():
        for k in body:
            if k in state:
                target[k].copy_(state[k].to(target[k].dtype))
    differs = {}
    if kind == "jetfm":
        source_spec = make_size("cnn", source_config.get("size", {})).image_spec()
        differs = {
            k: [getattr(source_spec, k), getattr(model.image, k)]
            for k in source_spec.__dataclass_fields__
            if getattr(source_spec, k) != getattr(model.image, k)
        }
    return {
        "source": str(path),
        "kind": kind,
        "tensors_loaded": sum(k in state for k in body),
        "head_reinitialised": sorted(k for k in target if k.startswith(HEAD)),
        "input_conv_adapted": adapted,
        "image_settings_differ": differs,  # {field: [source, model]}: loads, but the pixels mean other things
    }


def file_digest(path: str | Path) -> str:
    """sha256 of a weights file: recorded in the checkpoint so a resume with other weights is refused."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ImageFineTune(FineTune):
    """The fine-tuning objective of the pretraining stage (labelled fraction of `jetfm.finetune.labelled`, its
    stream and metrics tags) for the CNN: starts from pre-trained image weights (`weights`; the head starts
    fresh) or, without them, from the registry's random init (`scratch`).

    The weights are copied in `prepare`, after the model is built with the run's seed and before the
    optimiser exists, so step 0 sees exactly the file's tensors; what was loaded goes into metrics.json
    (`pretrained`) and the file and its sha256 into the checkpoint (`describe`, checked on resume).
    """

    name = "image_finetune"

    def __init__(
        self,
        method: str,
        fraction: float = 1.0,
        weights: str | Path | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(method, fraction, label_smoothing=label_smoothing)
        self.weights = Path(weights) if weights else None
        self.digest = file_digest(self.weights) if self.weights and self.weights.is_file() else ""

    def build(self, cfg: TrainConfig, meta: ShardMeta) -> nn.Module:
        if cfg.model != "cnn":
            raise ValueError(f"image fine-tuning trains the CNN (train.model = 'cnn'), got {cfg.model!r}")
        return Supervised.build(self, cfg, meta)

    def prepare(self, module: nn.Module, train_files: list[str], cfg: TrainConfig) -> None:
        if self.weights is not None:
            self.loaded = load_pretrained(module, self.weights)  # type: ignore[arg-type]  # checked inside

    def param_groups(self, module: nn.Module, cfg: TrainConfig) -> list[dict]:
        return decay_groups(module, cfg)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "fraction": self.fraction,
                "weights": str(self.weights or ""), "sha256": self.digest}  # fmt: skip
