"""Masked particle modelling (Golling et al. 2024; Leigh et al. 2024): hide some particles of each jet,
predict them from the rest.

- Which particles: per jet, round(fraction x n) of its n real particles (at least 1, and at least one stays
  visible), drawn with a `torch.Generator` seeded per batch (`batch_seed`, see `pretrain/objectives.py`), so
  the masks do not touch the global RNG and a resumed run draws the same masks.
- What the backbone sees: the visible particles only. The hidden ones are removed from its particle mask,
  so neither their features nor their 4-vectors (through the pair features) reach it.
- How the decoder knows *which* hidden particle to predict: a set has no order, so identical mask tokens
  would all get the same prediction. The shards are pT-ordered, so the decoder adds a learned embedding of
  each particle's pT rank (its slot) to every token: a hidden particle is "the mask token at rank r",
  and the decoder (a few attention blocks over visible + hidden particles, plus the jet embedding) predicts
  its features there. The rank is known only to the decoder: the backbone stays permutation invariant and
  is exactly what fine-tuning gets. This follows the original MPM's choice of ordering the set by pT; it
  leaks a little (a rank bounds the hidden pT between its neighbours), which costs nothing in compute,
  unlike set-matching losses or conditional generative heads (see docs/architecture.md).
- Targets: `continuous` regresses the standardised continuous features (MSE) and classifies charge (3 ways)
  and the particle-ID flags (5 ways); `tokenised` classifies the VQ-VAE token of the particle
  (`pretrain/vq.py`). The loss averages over hidden particles only. No labels are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jetfm.models.part import (
    Block,
    ParTBackbone,
    attention_dtype,
    key_mask_bias,
    self_attention,
    use_dense,
)

CHARGE = "part_charge"
PID_PREFIX = "part_is"


def choose_hidden(part_mask: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """(B, P) bool: the hidden particles, round(fraction x n) of each jet's n real ones (>= 1 hidden and
    >= 1 visible when n >= 2; none when n <= 1), uniformly among the real slots."""
    mask = part_mask.bool()
    n = mask.sum(1)
    k = torch.clamp(torch.round(fraction * n.double()).long(), min=1)
    k = torch.minimum(k, n - 1).clamp_min(0)
    scores = torch.rand(mask.shape, generator=generator, device=generator.device)
    scores = scores.to(mask.device).masked_fill(~mask, 2.0)  # padded slots sort last
    rank = scores.argsort(dim=1).argsort(dim=1)
    return (rank < k.unsqueeze(1)) & mask


@dataclass(frozen=True)
class FeatureGroups:
    """Indices of the particle features by target kind (continuous targets)."""

    regression: tuple[int, ...]
    charge: int | None
    pid: tuple[int, ...]

    @classmethod
    def from_names(cls, names: Any, num_features: int) -> FeatureGroups:
        """From the shards' `feature_names` (list or {"particle": [...]}); else all regression."""
        if isinstance(names, dict):
            names = names.get("particle")
        if not isinstance(names, list) or len(names) != num_features:
            return cls(tuple(range(num_features)), None, ())
        charge = names.index(CHARGE) if CHARGE in names else None
        pid = tuple(i for i, n in enumerate(names) if str(n).startswith(PID_PREFIX))
        reg = tuple(i for i in range(num_features) if i != charge and i not in pid)
        return cls(reg, charge, pid)

    @property
    def output_dim(self) -> int:
        return len(self.regression) + (3 if self.charge is not None else 0) + len(self.pid)


def continuous_loss(
    pred: torch.Tensor, target: torch.Tensor, groups: FeatureGroups
) -> dict[str, torch.Tensor]:
    """Per-part losses of the hidden particles: pred (N, output_dim), target (N, F) standardised features."""
    nr = len(groups.regression)
    out = {"regression": F.mse_loss(pred[:, :nr].float(), target[:, list(groups.regression)].float())}
    at = nr
    if groups.charge is not None:
        charge = torch.round(target[:, groups.charge]).long().clamp(-1, 1) + 1
        out["charge"] = F.cross_entropy(pred[:, at : at + 3].float(), charge)
        out["charge_acc"] = (pred[:, at : at + 3].argmax(1) == charge).float().mean().detach()
        at += 3
    if groups.pid:
        pid = target[:, list(groups.pid)].argmax(1)
        out["pid"] = F.cross_entropy(pred[:, at:].float(), pid)
        out["pid_acc"] = (pred[:, at:].argmax(1) == pid).float().mean().detach()
    out["loss"] = out["regression"] + out.get("charge", 0.0) + out.get("pid", 0.0)
    return out


def token_loss(pred: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy of the hidden particles' token ids: pred (N, K), tokens (N,)."""
    return {
        "loss": F.cross_entropy(pred.float(), tokens),
        "token_acc": (pred.argmax(1) == tokens).float().mean().detach(),
    }


class MaskedParticleDecoder(nn.Module):
    """Visible-particle embeddings + mask tokens -> predictions for the hidden particles.

    Every token gets the learned embedding of its slot (pT rank) and the jet embedding; a few attention
    blocks (no pair bias: the hidden particles' 4-vectors are unknown) mix them; a linear layer predicts.
    """

    def __init__(self, dim: int, heads: int, max_particles: int, output_dim: int, depth: int = 1) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.position = nn.Embedding(max_particles, dim)
        nn.init.trunc_normal_(self.position.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, 4, 0.0) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, output_dim)
        self.layout = "auto"  # as ParTBackbone.layout: packed on CPU eager, dense on CUDA / compiling

    def forward(
        self, particles: torch.Tensor, jet: torch.Tensor, visible: torch.Tensor, hidden: torch.Tensor
    ) -> torch.Tensor:
        """particles (B, P, D) from the backbone (visible slots), jet (B, D) -> (N_hidden, output_dim)."""
        p = particles.shape[1]
        if p > self.position.num_embeddings:
            raise ValueError(
                f"MPM decoder knows {self.position.num_embeddings} pT ranks, batch has {p} slots"
            )
        real = visible | hidden
        x = torch.where(hidden.unsqueeze(-1), self.mask_token.to(particles.dtype), particles)
        x = x + self.position.weight[:p].unsqueeze(0) + jet.unsqueeze(1)
        bias = key_mask_bias(real, attention_dtype(x))
        h = self_attention(self.blocks, x, real, bias, use_dense(self.layout, x))
        return self.out(self.norm(h[hidden]))


class MaskedParticleModel(nn.Module):
    """Backbone + MPM decoder (+ a frozen tokenizer for tokenised targets, stored with the model)."""

    def __init__(
        self, backbone: ParTBackbone, decoder: MaskedParticleDecoder, tokenizer: nn.Module | None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.tokenizer = tokenizer
        if tokenizer is not None:
            tokenizer.requires_grad_(False)

    def train(self, mode: bool = True) -> MaskedParticleModel:
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()
        return self

    def forward(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor,
        part_mask: torch.Tensor,
        hidden: torch.Tensor,
    ) -> torch.Tensor:
        """Predictions (N_hidden, output_dim) for the `hidden` particles, from the others only."""
        visible = part_mask.bool() & ~hidden
        particles, jet = self.backbone(part_features, part_vectors, visible)
        return self.decoder(particles, jet, visible, hidden)
