"""Masked particle modelling (Golling et al. 2024; Leigh et al. 2024): hide some particles of each jet,
predict them from the rest.

- Which particles: per jet, round(fraction x n) of its n real particles (at least 1, and at least one stays
  visible), drawn from a seed of the jet itself (`jet_seeds`: run seed, epoch, shard and row, carried by the
  stream's batches; `pretrain/unsupervised.SeededStream`). A jet's mask depends on nothing else: not the
  global RNG, not the batch it lands in, its padding, the rank or the loader worker that reads it. So a
  resumed run draws the same masks, and W ranks draw the masks of one process at the same global batch.
- What the backbone sees: the visible particles only. The hidden ones are removed from its particle mask,
  so neither their features nor their 4-vectors (through the pair features) reach it.
- How the decoder knows *which* hidden particle to predict: a set has no order, so identical mask tokens
  would all get the same prediction. Each mask token gets a learned embedding of its order *among the hidden
  particles of its jet* (0 = the hardest hidden one; the shards are pT-ordered), after JetSSL / Leigh et al.
  An absolute slot (pT rank among all particles) would tell the decoder that the hidden particle lies between
  its visible neighbours in pT, so it could interpolate log pT from them (measured: log pT/E were ~81 % of the
  old target variance, angles ~1 % each); the order among hidden ones says nothing about the visible ones.
  The backbone sees no order at all and stays permutation invariant: it is exactly what fine-tuning gets.
- Targets (`TargetSpec`): the continuous features, each standardised with its training-set mean and
  standard deviation (`TargetScaler`, buffers stored with the model), in groups (`kinematics`: pT, energy,
  angles; `track`: impact parameters and their errors) with an L1 (default) or MSE loss averaged per group;
  and one joint particle-ID class (charge x particle type, 3 x 5 = 15 classes) with label smoothing. The loss
  is a weighted sum of the group losses with stated weights (`pretrain.mpm.weights`, default 1 each), so no
  group dominates by its variance. `tokenised` classifies the VQ-VAE token instead (`pretrain/vq.py`).
- Skill: every head is also scored against a marginal baseline on the same hidden particles (the per-feature
  median for L1 / mean for MSE; the class frequencies for the ID and token heads), skill = 1 - model loss /
  baseline loss (0: no better than knowing the marginal; 1: perfect), reported in history and summary.json.
  The loss averages over hidden particles only. No labels are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
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


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic): nearby inputs, unrelated outputs."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def jet_seeds(key: int, shard: int, rows: np.ndarray) -> np.ndarray:
    """(n,) int64: one seed per jet from a run key (seed and epoch), its shard index and its row numbers."""
    base = _mix(np.array([key % 2**64], dtype=np.uint64) ^ _mix(np.array([shard], dtype=np.uint64)))
    return _mix(base ^ (np.asarray(rows, dtype=np.uint64) * _GOLDEN)).view(np.int64)


def slot_uniforms(seeds: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) float64 in [0, 1): a uniform per jet and particle slot from the jets' seeds (B,) int64;
    slot j's value depends on the jet's seed and j only, so it is the same at any padded width."""
    s = seeds.detach().cpu().numpy().astype(np.int64).view(np.uint64)
    slots = np.arange(1, width + 1, dtype=np.uint64) * _GOLDEN
    u = _mix(_mix(s)[:, None] + slots[None, :])
    return torch.from_numpy((u >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def choose_hidden(part_mask: torch.Tensor, fraction: float, seeds: torch.Tensor) -> torch.Tensor:
    """(B, P) bool: the hidden particles, round(fraction x n) of each jet's n real ones (>= 1 hidden and
    >= 1 visible when n >= 2; none when n <= 1), uniformly among the real slots, drawn from each jet's seed
    in `seeds` (B,) (`jet_seeds`) alone."""
    mask = part_mask.bool()
    n = mask.sum(1)
    k = torch.clamp(torch.round(fraction * n.double()).long(), min=1)
    k = torch.minimum(k, n - 1).clamp_min(0)
    scores = slot_uniforms(seeds, mask.shape[1]).to(mask.device).masked_fill(~mask, 2.0)  # padding last
    rank = scores.argsort(dim=1).argsort(dim=1)
    return (rank < k.unsqueeze(1)) & mask


TRACK_NAMES = ("part_d0", "part_d0err", "part_dz", "part_dzerr")
GROUPS = ("kinematics", "track", "id")
LOSSES = ("l1", "mse")


@dataclass(frozen=True)
class TargetSpec:
    """Indices of the particle features by target kind: regression groups, charge, particle-ID flags."""

    groups: tuple[tuple[str, tuple[int, ...]], ...]  # (group name, feature indices), regression only
    charge: int | None
    pid: tuple[int, ...]

    @classmethod
    def from_names(cls, names: Any, num_features: int) -> TargetSpec:
        """From the shards' `feature_names` (list or {"particle": [...]}); unnamed features all regress."""
        if isinstance(names, dict):
            names = names.get("particle")
        if not isinstance(names, list) or len(names) != num_features:
            return cls((("kinematics", tuple(range(num_features))),), None, ())
        charge = names.index(CHARGE) if CHARGE in names else None
        pid = tuple(i for i, n in enumerate(names) if str(n).startswith(PID_PREFIX))
        reg = [i for i in range(num_features) if i != charge and i not in pid]
        track = tuple(i for i in reg if names[i] in TRACK_NAMES)
        kin = tuple(i for i in reg if i not in track)
        return cls(tuple((g, idx) for g, idx in (("kinematics", kin), ("track", track)) if idx), charge, pid)

    @property
    def regression(self) -> tuple[int, ...]:
        return tuple(i for _, idx in self.groups for i in idx)

    @property
    def id_classes(self) -> int:
        """Joint particle-ID classes: charge (3) x particle type (len(pid)); 0 without either."""
        if self.charge is None and not self.pid:
            return 0
        return (3 if self.charge is not None else 1) * max(1, len(self.pid))

    @property
    def output_dim(self) -> int:
        return len(self.regression) + self.id_classes

    def id_target(self, target: torch.Tensor) -> torch.Tensor:
        """(N,) joint class: particle type x 3 + (charge + 1)."""
        cls = torch.zeros(len(target), dtype=torch.long, device=target.device)
        if self.pid:
            cls = target[:, list(self.pid)].argmax(1) * (3 if self.charge is not None else 1)
        if self.charge is not None:
            cls = cls + torch.round(target[:, self.charge]).long().clamp(-1, 1) + 1
        return cls


class TargetScaler(nn.Module):
    """Training-set statistics of the targets, as buffers saved with the model: the per-feature mean and
    standard deviation (the normalisation), the median of the normalised targets (the L1 baseline) and the
    log class frequencies (the ID or token baseline)."""

    def __init__(self, num_regression: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_regression))
        self.register_buffer("std", torch.ones(num_regression))
        self.register_buffer("median", torch.zeros(num_regression))
        self.register_buffer("log_prior", torch.zeros(num_classes))

    def fit(self, regression: torch.Tensor, classes: torch.Tensor | None) -> None:
        """regression (M, R) raw targets of real particles; classes (M,) class ids (or None)."""
        x = regression.double()
        if x.shape[1]:  # token targets have no regression part
            self.mean.copy_(x.mean(0))
            self.std.copy_(x.std(0).clamp_min(1e-6))
            self.median.copy_(((x - self.mean) / self.std).median(0).values)
        if classes is not None and self.log_prior.numel():
            counts = torch.bincount(classes, minlength=self.log_prior.numel()).double() + 1.0  # add-one
            self.log_prior.copy_((counts / counts.sum()).log())

    def normalise(self, regression: torch.Tensor) -> torch.Tensor:
        return (regression.float() - self.mean) / self.std


@dataclass(frozen=True)
class LossSettings:
    kind: str = "l1"  # l1 | mse, per feature of the normalised targets
    weights: tuple[tuple[str, float], ...] = (("kinematics", 1.0), ("track", 1.0), ("id", 1.0))
    id_smoothing: float = 0.1  # label smoothing of the joint particle-ID class

    def weight(self, group: str) -> float:
        return dict(self.weights).get(group, 1.0)


def continuous_loss(
    pred: torch.Tensor, target: torch.Tensor, spec: TargetSpec, scaler: TargetScaler,
    settings: LossSettings = LossSettings(), count: torch.Tensor | float | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Loss parts of the hidden particles: pred (N, output_dim), target (N, F) raw shard features.

    Per regression group: the mean L1 (or squared) error of the normalised targets, and `base_<group>` the
    same error of the marginal baseline (median or mean); for the joint ID class the label-smoothed
    cross-entropy (the loss), its plain NLL `id_nll` and the NLL of the class frequencies `base_id`, and
    accuracy. `loss` = sum of weight x group loss. Means are sums over the particles divided by `count`
    (default N; under DDP `ddp.global_count(N)`, so that W ranks optimise the mean over the global batch)."""
    n = len(pred) if count is None else count
    nr = len(spec.regression)
    t = scaler.normalise(target[:, list(spec.regression)])
    p = pred[:, :nr].float()
    if settings.kind == "l1":
        err, base = (p - t).abs(), (t - scaler.median).abs()
    else:
        err, base = (p - t) ** 2, t**2  # normalised: the mean predictor is 0
    out: dict[str, torch.Tensor] = {}
    at = 0
    total = pred.new_zeros((), dtype=torch.float32)
    for name, idx in spec.groups:
        cols = slice(at, at + len(idx))
        out[name] = err[:, cols].sum() / (n * len(idx))
        out[f"base_{name}"] = (base[:, cols].sum() / (n * len(idx))).detach()
        total = total + settings.weight(name) * out[name]
        at += len(idx)
    if spec.id_classes:
        logits, y = pred[:, nr:].float(), spec.id_target(target)
        out["id"] = F.cross_entropy(logits, y, label_smoothing=settings.id_smoothing, reduction="sum") / n
        out["id_nll"] = (F.cross_entropy(logits, y, reduction="sum") / n).detach()
        prior = scaler.log_prior.float().expand(len(y), -1)
        out["base_id"] = (F.nll_loss(prior, y, reduction="sum") / n).detach()
        out["id_acc"] = ((logits.argmax(1) == y).float().sum() / n).detach()
        total = total + settings.weight("id") * out["id"]
    out["loss"] = total
    return out


def skills(means: dict[str, float]) -> dict[str, float]:
    """skill_<head> = 1 - model loss / marginal-baseline loss, from mean loss parts (`continuous_loss`,
    `token_loss`)."""
    out = {}
    for key, base in means.items():
        if key.startswith("base_"):
            head = key.removeprefix("base_")
            model = means.get(f"{head}_nll", means.get(head))
            if model is not None and base > 0:
                out[f"skill_{head}"] = 1.0 - model / base
    return out


def token_loss(
    pred: torch.Tensor, tokens: torch.Tensor, log_prior: torch.Tensor | None = None,
    count: torch.Tensor | float | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Cross-entropy of the hidden particles' token ids: pred (N, K), tokens (N,); with the token
    frequencies' log (`log_prior`), `base_token` is the NLL of that marginal baseline. Means divide by
    `count` (default N; see `continuous_loss`)."""
    n = len(pred) if count is None else count
    out = {
        "loss": F.cross_entropy(pred.float(), tokens, reduction="sum") / n,
        "token_acc": ((pred.argmax(1) == tokens).float().sum() / n).detach(),
    }
    out["token"] = out["loss"].detach()
    if log_prior is not None:
        prior = log_prior.float().expand(len(tokens), -1)
        out["base_token"] = (F.nll_loss(prior, tokens, reduction="sum") / n).detach()
    return out


class MaskedParticleDecoder(nn.Module):
    """Visible-particle embeddings + mask tokens -> predictions for the hidden particles.

    Each mask token gets the learned embedding of its order among the jet's hidden particles; every token
    gets the jet embedding; a few attention blocks (no pair bias: the hidden particles' 4-vectors are
    unknown) mix them; a linear layer predicts.
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
                f"MPM decoder knows {self.position.num_embeddings} mask-token ranks, batch has {p} slots"
            )
        real = visible | hidden
        order = (hidden.long().cumsum(1) - 1).clamp_min(0)  # rank among the hidden particles (pT order)
        token = self.mask_token.to(particles.dtype) + self.position(order).to(particles.dtype)
        x = torch.where(hidden.unsqueeze(-1), token, particles) + jet.unsqueeze(1)
        bias = key_mask_bias(real, attention_dtype(x))
        h = self_attention(self.blocks, x, real, bias, use_dense(self.layout, x))
        return self.out(self.norm(h[hidden]))


class MaskedParticleModel(nn.Module):
    """Backbone + MPM decoder + the targets' statistics (`TargetScaler`) (+ a frozen tokenizer for
    tokenised targets), all stored with the model."""

    def __init__(
        self,
        backbone: ParTBackbone,
        decoder: MaskedParticleDecoder,
        tokenizer: nn.Module | None,
        scaler: TargetScaler | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.scaler = scaler if scaler is not None else TargetScaler(0, 0)
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
