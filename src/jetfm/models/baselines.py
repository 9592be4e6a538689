"""Baselines on the same data: a particle-level Deep Sets / Energy-Flow-style PFN and a jet-level MLP.

PFN (Komiske, Metodiev, Thaler 2019): per-particle Φ MLP, sum over the particles of the jet, F MLP on the
sum. It sees the same 17 particle features as ParT but no pairwise interactions: the gap between the two is
what attention with pair features buys. The jet MLP sees only the jet-level observables (pT, mass, τ ratios…).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from jetfm.models.cost import linear_macs


def mlp(in_dim: int, dims: tuple[int, ...], out_dim: int | None = None) -> nn.Sequential:
    """Linear + ReLU stack, optionally followed by a bare Linear to `out_dim`."""
    layers: list[nn.Module] = []
    for d in dims:
        layers += [nn.Linear(in_dim, d), nn.ReLU()]
        in_dim = d
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class PFNSize:
    phi_dims: tuple[int, ...] = (128, 128, 128)  # per-particle Φ (weaver's JetClass PFN)
    f_dims: tuple[int, ...] = (128, 128, 128)  # F on the summed latent


class ParticleFlowNetwork(nn.Module):
    """Deep Sets: logits = F(Σ_i mask_i Φ(x_i)); permutation invariant by construction."""

    def __init__(self, num_features: int, num_classes: int, size: PFNSize | None = None) -> None:
        super().__init__()
        size = size or PFNSize()
        self.size = size
        self.phi = mlp(num_features, tuple(size.phi_dims))
        self.f = mlp(size.phi_dims[-1], tuple(size.f_dims), num_classes)

    def forward(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor | None,
        part_mask: torch.Tensor,
        jet_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        keep = part_mask.unsqueeze(-1).to(part_features.dtype)
        latent = (self.phi(part_features * keep) * keep).sum(dim=1)
        return self.f(latent)

    def forward_macs(self, p: float) -> float:
        """Φ once per particle, F once per jet."""
        return p * linear_macs(self.phi) + linear_macs(self.f)


@dataclass(frozen=True)
class JetMLPSize:
    dims: tuple[int, ...] = (64, 64, 64)


class JetStandardisation(nn.Module):
    """Jet-level features standardised by buffers fitted on the training set (`fit_input`): the input of the
    jet MLP and of the FPGA stage's jet-level students."""

    def __init__(self, num_jet_features: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(num_jet_features))
        self.register_buffer("scale", torch.ones(num_jet_features))

    @torch.no_grad()
    def fit_input(self, jet_features: torch.Tensor) -> None:
        """Standardise each jet feature with training-set mean/std (the raw ones span 1e-2..1e3)."""
        x = torch.nan_to_num(jet_features.double())
        self.shift.copy_(x.mean(0).float())
        self.scale.copy_(1.0 / x.std(0).clamp(min=1e-6).float())

    def features(
        self,
        part_features: torch.Tensor | None,
        part_vectors: torch.Tensor | None,
        part_mask: torch.Tensor | None,
        jet_features: torch.Tensor,
    ) -> torch.Tensor:
        """The MLP's input: jet features in units of their training-set spread, clamped to +-10."""
        return ((torch.nan_to_num(jet_features) - self.shift) * self.scale).clamp(-10, 10)


class JetMLP(JetStandardisation):
    """MLP on the jet-level features, standardised by buffers fitted on the training set (`fit_input`)."""

    def __init__(self, num_jet_features: int, num_classes: int, size: JetMLPSize | None = None) -> None:
        super().__init__(num_jet_features)
        size = size or JetMLPSize()
        self.size = size
        self.net = mlp(num_jet_features, tuple(size.dims), num_classes)

    def forward(self, part_features, part_vectors, part_mask, jet_features):  # type: ignore[no-untyped-def]
        return self.net(self.features(part_features, part_vectors, part_mask, jet_features))

    def forward_macs(self, p: float) -> float:
        """Jet features only: independent of the particles."""
        return linear_macs(self.net)
