"""RS3L's robustness measure: how far a tagger's outputs move between two versions of the same event.

For per-event softmax vectors p (nominal version) and q (shifted version) of the same event:
  total variation  TV(p, q) = 1/2 sum_c |p_c - q_c|              in [0, 1]
  Jensen-Shannon   JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, in bits, in [0, 1]
  argmax flip      whether the predicted class changes.
The table reports their means over events; TV is the headline (bounded, symmetric, no logs of 0).
"""

from __future__ import annotations

import numpy as np


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row total-variation distance between probability vectors (rows of p and q)."""
    p, q = _pair(p, q)
    return 0.5 * np.abs(p - q).sum(axis=1)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen-Shannon divergence in bits (0 for identical rows, 1 for disjoint support)."""
    p, q = _pair(p, q)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        ratio = np.divide(a, m, out=np.ones_like(a), where=a > 0)
        return (a * np.log2(ratio)).sum(axis=1)

    return np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0)


def output_distance(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """Mean TV, mean JS and the argmax-flip rate over the paired events."""
    p, q = _pair(p, q)
    return {
        "output_tv": float(total_variation(p, q).mean()),
        "output_js": float(jensen_shannon(p, q).mean()),
        "argmax_flip": float((p.argmax(1) != q.argmax(1)).mean()),
    }


def _pair(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2 or len(p) == 0:
        raise ValueError(
            f"paired outputs must be two non-empty (events, classes) arrays, got {p.shape}, {q.shape}"
        )
    return p, q
