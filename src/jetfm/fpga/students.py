"""Students: small taggers whose firmware part is one plain `nn.Sequential` (`core`) hls4ml converts.

Both keep the registry call signature `model(part_features, part_vectors, part_mask, jet_features)`, so the
one training loop, `objectives.predict` and the metrics treat them like any tagger. `features(...)` is what
the trigger hardware would receive (computed upstream of the firmware); `core` is the firmware.

- `jet_mlp`: the hls4ml jet-tagging benchmark MLP (64-32-32 ReLU, Duarte et al. 2018) on the standardised
  jet-level observables (reuses `models.JetMLP`, its input standardisation fitted on the training set).
- `deepsets`: Deep Sets on the leading `particles` particles (pT-ordered, zero-padded): Φ as pointwise
  Conv1d layers *without biases* plus a "real particle" input channel (its weight acts as Φ's bias for real
  particles only), so padded slots give Φ = 0 exactly and the firmware needs no mask input; the sum over
  particles is an AvgPool1d (the mean; the 1/N is absorbed by F's first layer). `jet_features: true` adds
  the jet MLP's standardised observables as per-particle channels (real particles only).
- `attention`: one multi-head self-attention block over the same leading particles, an HGQ2 (Keras 3) model
  in a torch wrapper (`fpga/attention.py`): hls4ml's PyTorch frontend has no attention layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jetfm.fpga.kinds import KINDS, split_kind
from jetfm.fpga.particles import leading_particles
from jetfm.models.baselines import JetMLP, JetMLPSize, mlp


class JetMLPStudent(JetMLP):
    """`models.JetMLP` with its layers as `core` and the standardisation as `features`."""

    def __init__(self, num_jet_features: int, num_classes: int, dims: tuple[int, ...] = (64, 32, 32)) -> None:
        super().__init__(num_jet_features, num_classes, JetMLPSize(tuple(dims)))
        self.core = self.net
        self.input_shape: tuple[int, ...] = (num_jet_features,)
        self.input_quant: nn.Module = nn.Identity()

    def forward(self, part_features, part_vectors, part_mask, jet_features):  # type: ignore[no-untyped-def]
        x = self.features(part_features, part_vectors, part_mask, jet_features)
        return self.core(self.input_quant(x.to(self.shift.dtype)))


class DeepSetsStudent(nn.Module):
    """logits = F(mean_i Φ([x_i, 1])) over the leading particles, Φ(padding) = 0 by construction.

    `jet_features`: Φ also sees the jet observables, standardised as `JetMLP`'s (its `fit_input` and
    `features` on the same buffers, fitted on the training set), as extra channels of every real particle and
    zeros on padded slots ([x_i, 1, j]·1_real), so Φ(padding) = 0 still holds and the firmware input stays one
    (C, particles) tensor.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        particles: int = 16,
        phi_dims: tuple[int, ...] = (32, 32),
        f_dims: tuple[int, ...] = (32,),
        jet_features: bool = False,
        num_jet_features: int = 0,
    ) -> None:
        super().__init__()
        self.particles, self.jet_features = particles, bool(jet_features)
        width = num_features + 1 + (num_jet_features if self.jet_features else 0)
        if self.jet_features:
            if num_jet_features < 1:
                raise ValueError("jet_features needs the data's jet observables (num_jet_features >= 1)")
            self.register_buffer("shift", torch.zeros(num_jet_features))
            self.register_buffer("scale", torch.ones(num_jet_features))
        self.input_shape = (width, particles)
        layers: list[nn.Module] = []
        for d in phi_dims:
            layers += [nn.Conv1d(width, d, kernel_size=1, bias=False), nn.ReLU()]
            width = d
        layers += [nn.AvgPool1d(particles), nn.Flatten(), *mlp(width, tuple(f_dims), num_classes)]
        self.core = nn.Sequential(*layers)
        self.input_quant: nn.Module = nn.Identity()
        self.register_buffer("dtype_probe", torch.zeros(()), persistent=False)

    @torch.no_grad()
    def fit_input(self, jet_features: torch.Tensor) -> None:
        """`JetMLP.fit_input` when Φ sees the jet observables (nothing to fit otherwise)."""
        if self.jet_features:
            JetMLP.fit_input(self, jet_features)  # type: ignore[arg-type]

    def features(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor | None,
        part_mask: torch.Tensor,
        jet_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, C, particles): leading particles' features and a 1 for real ones (and with `jet_features` the
        standardised jet observables on real ones), zeros for padding."""
        x = leading_particles(part_features, part_mask, self.particles)
        if self.jet_features:
            jets = JetMLP.features(self, None, None, None, jet_features)  # type: ignore[arg-type]
            x = torch.cat([x, jets.to(x.dtype).unsqueeze(1) * x[..., -1:]], dim=-1)
        return x.transpose(1, 2)

    def forward(self, part_features, part_vectors, part_mask, jet_features=None):  # type: ignore[no-untyped-def]
        x = self.features(part_features, part_vectors, part_mask, jet_features)
        return self.core(self.input_quant(x.to(self.dtype_probe.dtype)))


STUDENTS = tuple(KINDS)  # the student kinds; any name with `fpga.sizes.<name>.kind` is a student too


def build_student(
    name: str, num_features: int, num_jet_features: int, num_classes: int, size: dict[str, Any] | None = None
) -> nn.Module:
    """The student `name` of its kind (`kinds.kind_of`), sized by `size` without its `kind` key."""
    kind, size = split_kind(name, size)
    size = {k: tuple(v) if isinstance(v, list) else v for k, v in size.items()}
    try:
        if kind == "jet_mlp":
            return JetMLPStudent(num_jet_features, num_classes, **size)
        if kind == "deepsets":
            return DeepSetsStudent(num_features, num_classes, num_jet_features=num_jet_features, **size)
        if kind == "attention":
            from jetfm.fpga.attention import AttentionStudent  # imports Keras (torch backend) and HGQ2

            return AttentionStudent(num_features, num_classes, **size)
        if kind == "hgq_mlp":
            from jetfm.fpga.hgq_mlp import HGQMLPStudent  # imports Keras (torch backend) and HGQ2

            return HGQMLPStudent(num_jet_features, num_classes, **size)
    except TypeError as exc:
        raise ValueError(f"fpga.sizes.{name}: {exc}") from exc
    raise AssertionError(f"kind {kind!r} is in kinds.KINDS but has no class here")
