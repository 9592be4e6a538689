"""HCCS: the integer-friendly clipped-linear softmax surrogate (Danopoulos et al. 2026; reference.md).

For logits x of one head: m = max x, δ_i = min(m − x_i, D), s_i = B − S·δ_i, p_i = s_i / Σ_j s_j, with
B − S·D ≥ 0 so every s_i ≥ 0. No exponential and no lookup table: a max, a subtraction, a clip, a multiply
by a constant and one division, which is why it suits firmware where hls4ml's table softmax flips argmaxes.
(B, S, D) are fitted per attention head by a grid search minimising KL(float softmax ‖ HCCS) on calibration
logits (`calibrate`); `HCCSSoftmax` is the drop-in module (piecewise linear, so it trains in the loop).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

EPS = 1e-12


def hccs(x: torch.Tensor, b: torch.Tensor, s: torch.Tensor, d: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The surrogate along `dim`; b, s, d broadcast against x (e.g. shape (heads, 1, 1) for (B, H, L, L))."""
    delta = torch.minimum(x.amax(dim=dim, keepdim=True) - x, d)
    scores = (b - s * delta).clamp_min(0)
    return scores / scores.sum(dim=dim, keepdim=True).clamp_min(EPS)


def kl_to_softmax(x: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Mean over rows of KL(softmax(x) ‖ q)."""
    p = torch.softmax(x.double(), dim=dim)
    return (p * (torch.log(p.clamp_min(EPS)) - torch.log(q.double().clamp_min(EPS)))).sum(dim).mean()


DEFAULT_GRID = {
    "b": tuple(float(v) for v in range(1, 65)),
    "s": (1.0, 2.0, 4.0, 8.0, 16.0),
    "d": tuple(0.5 * k for k in range(1, 25)),
}


def calibrate(
    logits: torch.Tensor, grid: dict[str, tuple[float, ...]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head: the (B, S, D) of the grid with the smallest KL to the float softmax.

    `logits`: (heads, rows, length) calibration logits (attention scores of each head). Returns
    params (heads, 3) = (B, S, D) and the heads' KL at the optimum.
    """
    grid = grid or DEFAULT_GRID
    heads = logits.shape[0]
    best = torch.full((heads,), float("inf"), dtype=torch.float64)
    params = torch.zeros(heads, 3, dtype=torch.float64)
    x = logits.double()
    for b, s, d in itertools.product(grid["b"], grid["s"], grid["d"]):
        if b - s * d < 0:
            continue
        q = hccs(x, torch.tensor(b), torch.tensor(s), torch.tensor(d))
        p = torch.softmax(x, -1)
        kl = (p * (torch.log(p.clamp_min(EPS)) - torch.log(q.clamp_min(EPS)))).sum(-1).mean(-1)
        better = kl < best
        best = torch.where(better, kl, best)
        params[better] = torch.tensor([b, s, d], dtype=torch.float64)
    return params, best


class HCCSSoftmax(nn.Module):
    """Softmax replacement over the last dim of (batch, heads, ..., length) scores, per-head (B, S, D)."""

    def __init__(self, heads: int, b: float = 16.0, s: float = 2.0, d: float = 8.0) -> None:
        super().__init__()
        self.register_buffer("params", torch.tensor([[b, s, d]] * heads, dtype=torch.float32))

    def set_params(self, params: torch.Tensor) -> None:
        self.params.copy_(params.to(self.params))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (scores.dim() - 2)
        b, s, d = (self.params[:, k].view(shape) for k in range(3))
        return hccs(scores, b, s, d)
