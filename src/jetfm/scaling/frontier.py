"""The compute-optimal frontier N_opt(C), D_opt(C), L_opt(C) with the measured compute of each size.

C = k(N) N D, with k(N) the training FLOPs per (non-embedding parameter x jet) measured for that size (the
FLOP counter on real batches; small ParTs spend a larger share on attention and the pair MLP, so k is not one
number). Between sizes k is interpolated in log-log, beyond the grid held at the nearest size. N_opt(C) is
found numerically on a fine grid of N (no closed form once k depends on N), for the central parameters and
for every bootstrap sample at once, which gives the frontier's band. Budgets, N_opt or D_opt outside what the
grid measured are flagged as extrapolation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_GRID_POINTS = 600


def flops_per_size(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(sizes N ascending, k per size) from the cells: mean of FLOPs / (N x jets seen) over a size's cells."""
    n = np.array([float(r["N"]) for r in rows])
    k = np.array([float(r["flops"]) / (float(r["N"]) * float(r["jets_seen"])) for r in rows])
    sizes = np.unique(n)
    return sizes, np.array([k[n == s].mean() for s in sizes])


def k_of(n: np.ndarray, sizes: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """FLOPs per (parameter x jet) at any N: log-log interpolation between measured sizes, flat outside."""
    return np.exp(np.interp(np.log(n), np.log(sizes), np.log(ks)))


def _law(params: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    p = np.asarray(params, float)[..., None, None, :]
    return p[..., 0] + p[..., 1] * n ** -p[..., 2] + p[..., 3] * d ** -p[..., 4]


def optimal(
    params: np.ndarray, budgets: np.ndarray, sizes: np.ndarray, ks: np.ndarray, span: float = 3.0
) -> dict[str, np.ndarray]:
    """N_opt, D_opt, L_opt for each budget, for parameters of shape (5,) or (S, 5): arrays (..., budgets)."""
    log_n = np.linspace(np.log10(sizes.min()) - span, np.log10(sizes.max()) + span, N_GRID_POINTS)
    n = 10.0**log_n
    d = np.asarray(budgets, float)[:, None] / (k_of(n, sizes, ks) * n)[None, :]  # (budgets, grid)
    loss = _law(params, n[None, :], d)  # (..., budgets, grid)
    i = np.clip(np.argmin(loss, axis=-1), 1, N_GRID_POINTS - 2)
    # parabola through the grid minimum and its neighbours, in log N
    y0, y1, y2 = (np.take_along_axis(loss, (i + o)[..., None], -1)[..., 0] for o in (-1, 0, 1))
    curv = y0 - 2 * y1 + y2
    shift = np.where(curv > 0, 0.5 * (y0 - y2) / np.where(curv > 0, curv, 1.0), 0.0)
    step = log_n[1] - log_n[0]
    n_opt = 10.0 ** (log_n[i] + np.clip(shift, -1, 1) * step)
    d_opt = np.asarray(budgets, float) / (k_of(n_opt, sizes, ks) * n_opt)
    p = np.asarray(params, float)[..., None, :]
    l_opt = p[..., 0] + p[..., 1] * n_opt ** -p[..., 2] + p[..., 3] * d_opt ** -p[..., 4]
    return {"N_opt": n_opt, "D_opt": d_opt, "L_opt": l_opt}


def slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of log y on log x along the last axis (y may carry leading sample axes)."""
    lx = np.log(x)
    ly = np.log(y)
    lx = lx - lx.mean()
    return ((ly - ly.mean(-1, keepdims=True)) * lx).sum(-1) / (lx**2).sum()


def frontier(
    params: np.ndarray,
    samples: np.ndarray,
    rows: list[dict[str, Any]],
    budget: float | None = None,
    points: int = 14,
) -> dict[str, Any]:
    """The frontier over budgets from the smallest measured C to 10x the largest, with 68 % bootstrap bands,
    the exponents a (N_opt ~ C^a) and b (D_opt ~ C^b) over the measured budgets, and N_opt at `budget`."""
    sizes, ks = flops_per_size(rows)
    flops = np.array([float(r["flops"]) for r in rows])
    d_all = np.array([float(r["D"]) for r in rows])
    c_min, c_max = float(flops.min()), float(flops.max())
    budgets = np.logspace(np.log10(c_min), np.log10(c_max) + 1, points)
    central = optimal(params, budgets, sizes, ks)
    band = optimal(samples, budgets, sizes, ks) if len(samples) > 2 else None
    extrapolated = (
        (budgets > c_max * 1.0001)
        | (central["N_opt"] < sizes.min())
        | (central["N_opt"] > sizes.max())
        | (central["D_opt"] < d_all.min())
        | (central["D_opt"] > d_all.max())
    )
    inside = budgets <= c_max * 1.0001
    out: dict[str, Any] = {
        "C_per_N_D": {f"{s:.0f}": float(k) for s, k in zip(sizes, ks, strict=True)},
        "compute": "C = k(N) N D, k(N) measured per size (FLOP counter, real batches), log-log interpolated",
        "relation": "N_opt ∝ C^a, D_opt ∝ C^b (slopes over the measured budgets)",
        "points": [],
    }
    for name, key in (("a", "N_opt"), ("b", "D_opt")):
        value = float(slope(budgets[inside], central[key][inside]))
        entry: dict[str, Any] = {"value": value}
        if band is not None:
            s = slope(budgets[inside], band[key][:, inside])
            entry.update(
                uncertainty=float((np.percentile(s, 84) - np.percentile(s, 16)) / 2),
                p16=float(np.percentile(s, 16)),
                p84=float(np.percentile(s, 84)),
            )
        out[name] = entry
    for j, c in enumerate(budgets):
        point: dict[str, Any] = {"C": float(c), "extrapolated": bool(extrapolated[j])}
        for key in ("N_opt", "D_opt", "L_opt"):
            point[key] = float(central[key][j])
            if band is not None:
                point[f"{key}_p16"] = float(np.percentile(band[key][:, j], 16))
                point[f"{key}_p84"] = float(np.percentile(band[key][:, j], 84))
        out["points"].append(point)
    c_star = float(budget or c_max)
    at = optimal(params, np.array([c_star]), sizes, ks)
    n_star, d_star = float(at["N_opt"][0]), float(at["D_opt"][0])
    head: dict[str, Any] = {
        "C": c_star,
        "N_opt": n_star,
        "D_opt": d_star,
        "L_opt": float(at["L_opt"][0]),
        # beyond the grid in C, N or D: the law, not a measurement, puts the optimum there
        "extrapolated": bool(
            c_star > c_max * 1.0001
            or not sizes.min() <= n_star <= sizes.max()
            or not d_all.min() <= d_star <= d_all.max()
        ),
    }
    if band is not None:
        at_b = optimal(samples, np.array([c_star]), sizes, ks)["N_opt"][:, 0]
        head.update(N_opt_p16=float(np.percentile(at_b, 16)), N_opt_p84=float(np.percentile(at_b, 84)))
    out["at_budget"] = head
    return out
