"""Model registry: `build_model(name, num_features, num_jet_features, num_classes, **size)`.

Every model has the same call signature, `model(part_features, part_vectors, part_mask, jet_features)`
-> logits, so the training loop, pretraining and distillation never branch on the model type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from jetfm.models.baselines import JetMLP, JetMLPSize, ParticleFlowNetwork, PFNSize
from jetfm.models.cnn import CNNSize, JetCNN
from jetfm.models.part import ParTBackbone, ParticleTransformer, ParTSize

__all__ = [
    "MODELS",
    "CNNSize",
    "JetCNN",
    "JetMLP",
    "ParTBackbone",
    "ParTSize",
    "ParticleFlowNetwork",
    "ParticleTransformer",
    "build_model",
    "count_parameters",
    "flops_per_jet",
    "make_size",
]

# name -> (size dataclass, constructor(num_features, num_jet_features, num_classes, size))
MODELS: dict[str, tuple[type, Callable[[int, int, int, Any], nn.Module]]] = {
    "part": (ParTSize, lambda f, j, c, s: ParticleTransformer(f, c, s)),
    "pfn": (PFNSize, lambda f, j, c, s: ParticleFlowNetwork(f, c, s)),
    "mlp": (JetMLPSize, lambda f, j, c, s: JetMLP(j, c, s)),
    "cnn": (CNNSize, lambda f, j, c, s: JetCNN(c, s)),
}

CIFAR_STEM = {"stem_kernel": 3, "stem_stride": 1, "stem_pool": False}  # small images keep their resolution

# Named sizes; `jetclass` is the JetClass-full ParT of the paper (2.14M parameters).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "part": {
        "jetclass": {},
        "small": {"embed_dim": 64, "depth": 4, "heads": 4, "cls_depth": 2, "pair_dims": (32, 32, 32)},
        "tiny": {"embed_dim": 32, "depth": 2, "heads": 4, "cls_depth": 1, "pair_dims": (16, 16)},
    },
    "pfn": {"jetclass": {}, "small": {"phi_dims": (64, 64, 64), "f_dims": (64, 64)}},
    "mlp": {"jetclass": {}, "small": {"dims": (64, 64, 64)}},
    # resnet18 = torchvision's ResNet18 layout at 64x64 (loads its state dict); medium/small/tiny: 3x3
    # stride-1 stem, no pool; small (16x16) is the default config's (its training fits make run's budget)
    "cnn": {
        "resnet18": {},
        "medium": {"image_size": 32, "widths": (32, 64, 128), "blocks": (2, 2, 2), **CIFAR_STEM},
        "small": {"image_size": 16, "widths": (16, 32, 64), "blocks": (1, 1, 1), **CIFAR_STEM},
        "tiny": {"image_size": 16, "widths": (8, 16), "blocks": (1, 1), **CIFAR_STEM},
    },
}


def make_size(name: str, size: dict[str, Any] | None = None) -> Any:
    """The size dataclass of model `name`; `size` may name a preset (`{"preset": "small", ...}`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    size_cls, _ = MODELS[name]
    size = dict(size or {})
    preset = size.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS[name]:
            raise ValueError(f"unknown preset {preset!r} for model {name!r}; known: {sorted(PRESETS[name])}")
        size = {**PRESETS[name][preset], **size}
    fields = {f.name for f in dataclasses.fields(size_cls)}
    unknown = sorted(set(size) - fields)
    if unknown:
        raise ValueError(
            f"unknown size key(s) {unknown} for model {name!r}; allowed: {sorted(fields)} and 'preset' "
            f"({sorted(PRESETS[name])})"
        )
    size = {k: tuple(v) if isinstance(v, list) else v for k, v in size.items()}
    return size_cls(**size)


def build_model(
    name: str, num_features: int, num_jet_features: int, num_classes: int, **size: Any
) -> nn.Module:
    """Instantiate a registered model; `size` are fields of its size dataclass (or `preset=`)."""
    spec = make_size(name, size)  # raises for unknown names
    return MODELS[name][1](num_features, num_jet_features, num_classes, spec)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the N of scaling laws; embeddings included, there is no vocabulary)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_jet(model: nn.Module, n_particles: float) -> float:
    """Analytic forward FLOPs (2 x multiply-accumulates of Linear layers and attention matmuls) per jet.

    Each model counts its own (`forward_macs(p)`); norms, activations and softmax are left out (< 2 % here).
    `n_particles` is the (mean) number of particles attended over; training costs about 3x the forward pass.
    """
    forward_macs = getattr(model, "forward_macs", None)
    if forward_macs is None:
        raise TypeError(f"no FLOPs formula for {type(model).__name__} (it has no forward_macs)")
    return 2.0 * float(forward_macs(float(n_particles)))
