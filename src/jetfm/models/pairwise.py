"""Pairwise interaction features of ParT (Qu, Li, Qian 2022, eq. 3): ln Δ, ln kT, ln z, ln m².

Computed from the particles' 4-vectors (px, py, pz, E) in GeV. Pairs with a padded particle get zeros:
their attention bias is overridden by the key-padding mask anyway, and zeros keep the pair MLP finite.
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


def _pt_rapidity_phi(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    px, py, pz, e = v.unbind(-1)
    pt = torch.sqrt(px * px + py * py)
    # Rapidity is undefined for E <= |pz| (padding, rounding): clamp the ratio into (0, inf).
    num = (e + pz).clamp(min=EPS)
    den = (e - pz).clamp(min=EPS)
    y = 0.5 * torch.log(num / den)
    phi = torch.atan2(py, px)
    return pt, y, phi


def pair_features(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, P, 4) 4-vectors and (B, P) mask -> (B, 4, P, P) standardised [ln Δ, ln kT, ln z, ln m²].

    Every ordered pair, through `pair_features_at` (the model itself only evaluates i <= j).
    """
    b, p = mask.shape
    idx = torch.arange(p, device=mask.device)
    flat = pair_features_at(vectors, mask, idx.repeat_interleave(p), idx.repeat(p))  # pair n = i * P + j
    return flat.view(b, p, p, 4).permute(0, 3, 1, 2)


def pair_features_at(
    vectors: torch.Tensor, mask: torch.Tensor, i: torch.Tensor, j: torch.Tensor
) -> torch.Tensor:
    """`pair_features` on the pair list (i, j) only: (B, P, 4), (B, P) -> (B, N, 4), N = len(i), contiguous.

    Computing only the listed pairs avoids building a (B, 4, P, P) tensor and gathering from it.
    """
    v = vectors.float()
    pt, y, phi = _pt_rapidity_phi(v)
    pt_i, pt_j = pt[:, i], pt[:, j]
    dy = y[:, i] - y[:, j]
    dphi = torch.remainder(phi[:, i] - phi[:, j] + math.pi, 2 * math.pi) - math.pi
    delta = torch.sqrt(dy * dy + dphi * dphi)
    pt_min = torch.minimum(pt_i, pt_j)
    kt = pt_min * delta
    z = pt_min / (pt_i + pt_j).clamp(min=EPS)
    vsum = v[:, i] + v[:, j]
    m2 = vsum[..., 3] ** 2 - (vsum[..., :3] ** 2).sum(-1)
    feats = torch.stack(
        [
            torch.log(delta.clamp(min=EPS)),
            torch.log(kt.clamp(min=EPS)),
            torch.log(z.clamp(min=EPS)),
            torch.log(m2.clamp(min=EPS)),
        ],
        dim=-1,
    )
    feats = (feats - feats.new_tensor(PAIR_SHIFT)) * feats.new_tensor(PAIR_SCALE)
    pair_mask = (mask[:, i] & mask[:, j]).unsqueeze(-1)
    return torch.where(pair_mask, feats, torch.zeros_like(feats))
