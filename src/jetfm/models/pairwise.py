"""Pairwise interaction features of ParT (Qu, Li, Qian 2022, eq. 3): ln Δ, ln kT, ln z, ln m².

Computed from the particles' 4-vectors (px, py, pz, E) in GeV. Two entry points share one formula:
`pair_features` gives the dense (B, 4, P, P) matrix (padded pairs are zero), `valid_pair_features` only the
pairs of real particles, flattened over the batch, which is what the model evaluates.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-8
PAIR_FEATURE_NAMES: tuple[str, ...] = ("ln_delta", "ln_kt", "ln_z", "ln_m2")
# Fixed standardisation (shift, scale) of the four logs for boosted jets (pT 500-1000 GeV, R = 0.8): keeps
# the pair MLP's inputs O(1) without BatchNorm, so a jet's output never depends on the rest of its batch.
PAIR_SHIFT = (-2.0, -1.0, -3.0, 0.0)
PAIR_SCALE = (1.0, 0.5, 0.5, 0.25)


def _kinematics(v: torch.Tensor) -> torch.Tensor:
    """(..., 4) 4-vectors -> (..., 7): pt, rapidity, phi, px, py, pz, E (gathered together per pair)."""
    px, py, pz, e = v.unbind(-1)
    pt = torch.sqrt(px * px + py * py)
    # Rapidity is undefined for E <= |pz| (padding, rounding): clamp the ratio into (0, inf).
    y = 0.5 * torch.log((e + pz).clamp(min=EPS) / (e - pz).clamp(min=EPS))
    return torch.cat([torch.stack([pt, y, torch.atan2(py, px)], dim=-1), v], dim=-1)


def _pair_logs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kinematics of particles a and b, (..., 7) each -> standardised (..., 4) [ln Δ, ln kT, ln z, ln m²]."""
    pt_a, pt_b = a[..., 0], b[..., 0]
    dy = a[..., 1] - b[..., 1]
    dphi = torch.remainder(a[..., 2] - b[..., 2] + math.pi, 2 * math.pi) - math.pi
    delta = torch.sqrt(dy * dy + dphi * dphi)
    pt_min = torch.minimum(pt_a, pt_b)
    vsum = a[..., 3:] + b[..., 3:]
    m2 = vsum[..., 3] ** 2 - (vsum[..., :3] ** 2).sum(-1)
    logs = torch.log(
        torch.stack([delta, pt_min * delta, pt_min / (pt_a + pt_b).clamp(min=EPS), m2], dim=-1).clamp(min=EPS)
    )
    return (logs - logs.new_tensor(PAIR_SHIFT)) * logs.new_tensor(PAIR_SCALE)


def pair_features(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, P, 4) 4-vectors and (B, P) mask -> (B, 4, P, P) standardised features, zero on padded slots."""
    b, p = mask.shape
    kin = _kinematics(vectors.float())
    feats = _pair_logs(kin.unsqueeze(2).expand(b, p, p, 7), kin.unsqueeze(1).expand(b, p, p, 7))
    pair_mask = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(-1)
    return torch.where(pair_mask, feats, torch.zeros_like(feats)).permute(0, 3, 1, 2)


def valid_pairs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, P) mask -> (jet, i, j) index lists of the pairs i <= j of real particles, in row-major order.

    Only these pairs need the pair MLP: the features are symmetric, and pairs with a padded slot are
    masked out of attention. With JetClass multiplicities that is about half the padded i <= j pairs.
    """
    p = mask.shape[1]
    i, j = torch.triu_indices(p, p, device=mask.device)
    jet, n = (mask[:, i] & mask[:, j]).nonzero(as_tuple=True)
    return jet, i[n], j[n]


def valid_pair_features(
    vectors: torch.Tensor, jet: torch.Tensor, i: torch.Tensor, j: torch.Tensor
) -> torch.Tensor:
    """(B, P, 4) 4-vectors and the pair list of `valid_pairs` -> (M, 4) standardised features."""
    kin = _kinematics(vectors.float())
    return _pair_logs(kin[jet, i], kin[jet, j])


def dense_pair_features(vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """(B, P, 4) 4-vectors and fixed slot-pair indices (N,) -> (B, N, 4) standardised features.

    The static-shape form of `valid_pair_features` (every listed slot pair of every jet, padded or not),
    for the dense layout of `jetfm.models.part`.
    """
    kin = _kinematics(vectors.float())
    return _pair_logs(kin[:, i], kin[:, j])
