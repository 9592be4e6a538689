"""Fit of the loss surface L(N, D) = E + A/N^alpha + B/D^beta over the cells of a sweep.

Weighted least squares (scipy, bounded trust region, several starts) with each cell's validation-loss
standard error; parameter uncertainties from a bootstrap over cells (resample the cells, refit); goodness of
fit as chi^2/ndf (the weights carry only validation-set sampling noise, not seed-to-seed training noise, so
chi^2/ndf > 1 says how much else there is). From the fit: the compute-optimal frontier for C = k N D
(Chinchilla's closed form) and, from cells with repetitions, the effective data of E passes over U jets,
D' = U (1 + R* (1 - exp(-(E - 1)/R*))) (Muennighoff et al. 2023), a gain bounded by omega = 1 + R*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import chi2 as chi2_dist

NAMES = ("E", "A", "alpha", "B", "beta")
N_PARAMS = len(NAMES)
EXPONENT_MAX = 3.0
SIGMA_FLOOR = 1e-4  # relative: a cell's weight never exceeds that of a 0.01 % loss error


def law(params: np.ndarray | tuple[float, ...], n: np.ndarray, d: np.ndarray) -> np.ndarray:
    e, a, alpha, b, beta = params
    return e + a * np.asarray(n, float) ** -alpha + b * np.asarray(d, float) ** -beta


@dataclass(frozen=True)
class Cells:
    """The cells a fit sees: N, D, loss and its standard error (1-d arrays of one length)."""

    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    sigma: np.ndarray

    def take(self, idx: np.ndarray) -> Cells:
        return Cells(self.n[idx], self.d[idx], self.loss[idx], self.sigma[idx])


def _to_params(x: np.ndarray) -> np.ndarray:
    e, log_a, alpha, log_b, beta = x
    return np.array([e, math.exp(log_a), alpha, math.exp(log_b), beta])


def _residuals(x: np.ndarray, c: Cells) -> np.ndarray:
    return (law(_to_params(x), c.n, c.d) - c.loss) / c.sigma


def _starts(c: Cells) -> list[np.ndarray]:
    e0 = 0.5 * float(c.loss.min())
    return [
        np.array([e0, math.log(max(c.loss.max() - e0, 1e-3)) + alpha * math.log(c.n.min()), alpha,
                  math.log(max(c.loss.max() - e0, 1e-3)) + beta * math.log(c.d.min()), beta])
        for alpha in (0.15, 0.4, 0.8)
        for beta in (0.15, 0.4, 0.8)
    ]  # fmt: skip


def fit_once(c: Cells, starts: list[np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """Best-fitting (E, A, alpha, B, beta) and its chi^2 over the given starts (default: a 3x3 grid)."""
    lower = [0.0, -50.0, 0.0, -50.0, 0.0]
    upper = [float(c.loss.min()), 80.0, EXPONENT_MAX, 80.0, EXPONENT_MAX]
    best_x, best_chi2 = None, math.inf
    for x0 in starts or _starts(c):
        x0 = np.clip(x0, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
        try:
            res = least_squares(_residuals, x0, bounds=(lower, upper), args=(c,), method="trf", max_nfev=2000)
        except (ValueError, FloatingPointError):
            continue
        chi2 = float(np.sum(res.fun**2))
        if np.isfinite(chi2) and chi2 < best_chi2:
            best_x, best_chi2 = res.x, chi2
    if best_x is None:
        raise RuntimeError("the scaling-law fit failed from every starting point")
    return best_x, best_chi2


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "uncertainty": float(np.std(values, ddof=1)),
        "p16": float(np.percentile(values, 16)),
        "p84": float(np.percentile(values, 84)),
    }


def fit_law(c: Cells, bootstrap: int = 200, seed: int = 0) -> dict[str, Any]:
    """Central fit, bootstrap uncertainties (refit on cells resampled with replacement), chi^2/ndf."""
    x, chi2 = fit_once(c)
    params = _to_params(x)
    ndf = len(c.loss) - N_PARAMS
    rng = np.random.default_rng(seed)
    boots, failed = [], 0
    for _ in range(bootstrap):
        idx = rng.integers(0, len(c.loss), len(c.loss))
        if len(np.unique(idx)) <= N_PARAMS:
            failed += 1
            continue
        try:
            bx, _ = fit_once(c.take(idx), [x])
        except RuntimeError:
            failed += 1
            continue
        boots.append(_to_params(bx))
    samples = np.array(boots) if boots else np.empty((0, N_PARAMS))
    residuals = c.loss - law(params, c.n, c.d)
    out: dict[str, Any] = {
        "parameters": {
            name: {"value": float(params[i]), **(_summary(samples[:, i]) if len(samples) > 2 else {})}
            for i, name in enumerate(NAMES)
        },
        "goodness_of_fit": {
            "chi2": chi2,
            "ndf": ndf,
            "chi2_per_ndf": chi2 / ndf if ndf > 0 else None,
            "p_value": float(chi2_dist.sf(chi2, ndf)) if ndf > 0 else None,
            "rms_residual": float(np.sqrt(np.mean(residuals**2))),
            "max_abs_residual": float(np.max(np.abs(residuals))),
        },
        "bootstrap": {"resamples": bootstrap, "used": len(boots), "failed": failed},
        "cells": len(c.loss),
    }
    out["_samples"] = samples
    return out


def frontier(params: np.ndarray, k: float, flops: np.ndarray) -> dict[str, np.ndarray]:
    """Compute-optimal N and D for budgets C = k N D (minimise the law on that line; Chinchilla eq. 4)."""
    _e, a, alpha, b, beta = params
    g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
    nd = np.asarray(flops, float) / k
    n_opt = g * nd ** (beta / (alpha + beta))
    d_opt = nd / n_opt
    return {"C": np.asarray(flops, float), "N_opt": n_opt, "D_opt": d_opt, "L_opt": law(params, n_opt, d_opt)}


def effective_data(unique: np.ndarray, epochs: np.ndarray, r_star: float) -> np.ndarray:
    """D' = U (1 + R* (1 - exp(-(E - 1)/R*))): repeated passes are worth less and less (bounded by 1 + R*)."""
    reps = np.asarray(epochs, float) - 1.0
    return np.asarray(unique, float) * (1.0 + r_star * (1.0 - np.exp(-reps / r_star)))


def fit_repetition(params: np.ndarray, c: Cells, epochs: np.ndarray) -> float:
    """R* of the effective-data formula with the law's parameters held fixed (cells with epochs > 1)."""

    def resid(x: np.ndarray) -> np.ndarray:
        return (law(params, c.n, effective_data(c.d, epochs, math.exp(x[0]))) - c.loss) / c.sigma

    best = min(
        (least_squares(resid, [math.log(r0)], bounds=([-7.0], [9.0])) for r0 in (0.3, 3.0, 30.0)),
        key=lambda r: float(np.sum(r.fun**2)),
    )
    return math.exp(float(best.x[0]))


def _flag(name: str, value: float, spread: dict[str, float], lower: float, upper: float) -> str | None:
    tol = 1e-3 * max(1.0, abs(value))
    if abs(value - lower) < tol or (math.isfinite(upper) and abs(value - upper) < tol):
        return f"{name} = {value:.4g} sits at its bound [{lower:g}, {upper:g}]"
    if "uncertainty" not in spread:
        return f"{name}: no bootstrap uncertainty (too few cells)"
    if value and spread["uncertainty"] > 0.5 * abs(value):
        return f"{name} = {value:.4g} ± {spread['uncertainty']:.2g}: relative uncertainty above 50 %"
    return None


def analyse(rows: list[dict[str, Any]], bootstrap: int = 200, seed: int = 0) -> dict[str, Any]:
    """The whole fit of a sweep's runs.csv rows (N, D, epochs, val_loss, val_loss_sem, flops, jets_seen)."""
    n = np.array([float(r["N"]) for r in rows])
    d = np.array([float(r["D"]) for r in rows])
    epochs = np.array([int(r["epochs"]) for r in rows])
    loss = np.array([float(r["val_loss"]) for r in rows])
    sem = np.array([float(r.get("val_loss_sem") or 0.0) for r in rows])
    sigma = np.maximum(sem, SIGMA_FLOOR * loss)
    base = epochs == epochs.min()
    result: dict[str, Any] = {
        "law": "L(N, D) = E + A / N^alpha + B / D^beta",
        "N": "non-embedding parameters",
        "D": "training jets" + ("" if epochs.min() == 1 else f" (unique, each seen {epochs.min()} times)"),
        "grid": {
            "cells": len(rows), "sizes": len(np.unique(n)), "data_sizes": len(np.unique(d)),
            "epochs": sorted({int(e) for e in epochs}), "N_range": [float(n.min()), float(n.max())],
            "D_range": [float(d.min()), float(d.max())],
        },
        "notes": [],
        "unconstrained": [],
    }  # fmt: skip
    cells = Cells(n[base], d[base], loss[base], sigma[base])
    if len(np.unique(n[base])) < 2 or len(np.unique(d[base])) < 2 or base.sum() <= N_PARAMS:
        result["status"] = "underdetermined"
        result["notes"].append(
            f"{int(base.sum())} cells with {len(np.unique(n[base]))} sizes and "
            f"{len(np.unique(d[base]))} data sizes "
            f"cannot determine the {N_PARAMS} parameters (need > {N_PARAMS} cells, >= 2 of each): no fit"
        )
        return result
    fitted = fit_law(cells, bootstrap, seed)
    samples = fitted.pop("_samples")
    result.update(status="ok", **fitted)
    params = np.array([result["parameters"][k]["value"] for k in NAMES])
    bounds = {"E": (0.0, float(cells.loss.min())), "alpha": (0.0, EXPONENT_MAX), "beta": (0.0, EXPONENT_MAX),
              "A": (0.0, math.inf), "B": (0.0, math.inf)}  # fmt: skip
    for name in NAMES:
        flag = _flag(name, result["parameters"][name]["value"], result["parameters"][name], *bounds[name])
        if flag:
            result["unconstrained"].append(flag)
    if result["grid"]["sizes"] < 4:
        result["notes"].append(f"only {result['grid']['sizes']} model sizes: alpha and A rest on few points")
    if result["grid"]["data_sizes"] < 4:
        result["notes"].append(
            f"only {result['grid']['data_sizes']} data sizes: beta and B rest on few points"
        )

    # Compute-optimal frontier: C = k N D, k = measured FLOPs per (non-embedding parameter x jet seen).
    flops = np.array([float(r["flops"]) for r in rows])
    seen = np.array([float(r["jets_seen"]) for r in rows])
    k = float(np.median(flops / (n * seen)))
    budgets = np.logspace(math.log10(flops.min()), math.log10(flops.max()) + 1, 12)
    front = frontier(params, k, budgets)
    exps = np.array([[p[4] / (p[2] + p[4]), p[2] / (p[2] + p[4])] for p in samples]) if len(samples) else None
    result["frontier"] = {
        "C_per_N_D": k,
        "a": {"value": float(params[4] / (params[2] + params[4])),
              **(_summary(exps[:, 0]) if exps is not None and len(exps) > 2 else {})},
        "b": {"value": float(params[2] / (params[2] + params[4])),
              **(_summary(exps[:, 1]) if exps is not None and len(exps) > 2 else {})},
        "relation": "N_opt ∝ C^a, D_opt ∝ C^b, a = beta/(alpha+beta), b = alpha/(alpha+beta)",
        "points": [{key: float(front[key][i]) for key in front} for i in range(len(budgets))],
    }  # fmt: skip

    rep = epochs > epochs.min()
    if rep.any():
        rc = Cells(n[rep], d[rep], loss[rep], sigma[rep])
        e_rep = epochs[rep] - epochs.min() + 1
        r_star = fit_repetition(params, rc, e_rep)
        boot_r = []
        rng = np.random.default_rng(seed + 1)
        for p in samples:
            idx = rng.integers(0, rep.sum(), rep.sum())
            boot_r.append(fit_repetition(p, rc.take(idx), e_rep[idx]))
        spread = _summary(np.array(boot_r)) if len(boot_r) > 2 else {}
        result["repetition"] = {
            "formula": "D' = U (1 + R* (1 - exp(-(E - 1) / R*))), omega = 1 + R*",
            "R_star": {"value": r_star, **spread},
            "omega": {"value": 1 + r_star, **({k2: v + (1 if k2 != "uncertainty" else 0)
                                               for k2, v in spread.items()})},
            "cells": int(rep.sum()),
        }  # fmt: skip
        if not spread or spread["uncertainty"] > 0.5 * r_star:
            result["unconstrained"].append(f"R* = {r_star:.3g}: repetition gain poorly constrained")
    else:
        result["repetition"] = None
        result["notes"].append("no cells with repetitions: the effective-data gain is not fitted")
    return result
