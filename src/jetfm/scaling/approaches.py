"""Chinchilla's approaches 1 and 2: the exponent a of N_opt ~ C^a from measured points, no law assumed, to
set beside approach 3 (the parametric fit's frontier).

Approach 1 (envelope): every cell's learning curve gives (compute so far, validation loss) points; in each
log-spaced bin of compute the lowest loss is the envelope, and the size that reaches it is N_opt(C). Bins won
by the smallest or largest size are left out: there the grid's edge, not the law, picks the winner.

Approach 2 (iso-FLOP profiles): for a budget C, each size N has D = C / (k(N) N); its final loss there is
interpolated (log loss linear in log D) between the measured data sizes of that size. A parabola in log N
through the sizes that reach C gives the profile's minimum, N_opt(C), when the minimum lies inside them.

Both fit log N_opt against log C over the budgets where they give a value.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from jetfm.scaling.frontier import flops_per_size, k_of, slope


def _fit_exponent(c: list[float], n: list[float]) -> float | None:
    if len(c) < 3 or len(set(np.round(np.log(n), 6))) < 2:
        return None
    return float(slope(np.array(c), np.array(n)))


def envelope(
    curves: list[dict[str, Any]], sizes: np.ndarray, ks: np.ndarray, bins: int = 16
) -> dict[str, Any]:
    """Approach 1 from learning-curve points {N, jets_seen, val_loss}."""
    n = np.array([float(p["N"]) for p in curves])
    seen = np.array([float(p["jets_seen"]) for p in curves])
    loss = np.array([float(p["val_loss"]) for p in curves])
    c = k_of(n, sizes, ks) * n * seen
    edges = np.logspace(np.log10(c.min()), np.log10(c.max()) * (1 + 1e-12), bins + 1)
    points = []
    for lo, hi in itertools.pairwise(edges):
        sel = np.flatnonzero((c >= lo) & (c < hi))
        if not len(sel):
            continue
        best = sel[np.argmin(loss[sel])]
        edge = n[best] in (sizes.min(), sizes.max())
        points.append(
            {"C": float(c[best]), "N": float(n[best]), "loss": float(loss[best]), "grid_edge": bool(edge)}
        )
    inner = [p for p in points if not p["grid_edge"]]
    return {
        "a": _fit_exponent([p["C"] for p in inner], [p["N"] for p in inner]),
        "points": points,
        "bins_used": len(inner),
    }


def _final_losses(rows: list[dict[str, Any]]) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Per size: ascending D and the mean final loss over seeds."""
    by: dict[float, dict[float, list[float]]] = {}
    for r in rows:
        by.setdefault(float(r["N"]), {}).setdefault(float(r["D"]), []).append(float(r["val_loss"]))
    out = {}
    for n, per_d in by.items():
        d = np.array(sorted(per_d))
        out[n] = (d, np.array([np.mean(per_d[x]) for x in d]))
    return out


def isoflop(
    rows: list[dict[str, Any]], sizes: np.ndarray, ks: np.ndarray, budgets: int = 12
) -> dict[str, Any]:
    """Approach 2 from the final losses of single-pass cells {N, D, val_loss}."""
    finals = _final_losses(rows)
    c_lo = min(k_of(np.array(n), sizes, ks) * n * d[0] for n, (d, _) in finals.items())
    c_hi = max(k_of(np.array(n), sizes, ks) * n * d[-1] for n, (d, _) in finals.items())
    profiles = []
    for c in np.logspace(np.log10(c_lo), np.log10(c_hi), budgets):
        xs, ys = [], []
        for n, (d, loss) in sorted(finals.items()):
            d_c = c / (float(k_of(np.array(n), sizes, ks)) * n)
            if d[0] <= d_c <= d[-1] and len(d) > 1:
                xs.append(np.log(n))
                ys.append(float(np.exp(np.interp(np.log(d_c), np.log(d), np.log(loss)))))
        if len(xs) < 3:
            continue
        a2, a1, _a0 = np.polyfit(xs, ys, 2)
        vertex = -a1 / (2 * a2) if a2 > 0 else np.nan
        inside = bool(a2 > 0 and min(xs) < vertex < max(xs))
        profiles.append({"C": float(c), "sizes": len(xs), "N_opt": float(np.exp(vertex)) if inside else None})
    good = [p for p in profiles if p["N_opt"] is not None]
    return {
        "a": _fit_exponent([p["C"] for p in good], [p["N_opt"] for p in good]),
        "profiles": profiles,
        "budgets_used": len(good),
    }


def compare_approaches(
    rows: list[dict[str, Any]], curves: list[dict[str, Any]], parametric_a: dict[str, Any]
) -> dict[str, Any]:
    """The exponent of N_opt(C) from approaches 1, 2 and 3 side by side."""
    sizes, ks = flops_per_size(rows)
    out: dict[str, Any] = {
        "approach_3_parametric": {
            "a": parametric_a.get("value"),
            "uncertainty": parametric_a.get("uncertainty"),
        }
    }
    out["approach_2_isoflop"] = isoflop(rows, sizes, ks)
    out["approach_1_envelope"] = (
        envelope(curves, sizes, ks) if curves else {"a": None, "note": "no learning curves in this sweep"}
    )
    return out
