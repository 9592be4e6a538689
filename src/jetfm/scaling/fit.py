"""Fit of the loss surface L(N, D) = E + A/N^alpha + B/D^beta over the cells of a sweep.

Two estimators side by side (`optimise.py`): the Chinchilla one (Huber, delta = 1e-3, on log residuals;
L-BFGS from a grid of initialisations), which is the headline, and weighted least squares with the noise
model (`noise.py`: validation standard error plus seed-to-seed training scatter), whose chi^2/ndf says whether
that noise model explains the scatter about the law.

Uncertainties: a parametric bootstrap. Each replicate redraws every cell's loss from the fitted law with the
noise model's error (scaled up by sqrt(chi^2/ndf) when the scatter exceeds the model, never down) and refits
it from the central solution and the best points of the init grid. Unlike resampling cells, this works on a
grid of 16 cells, where a resample with replacement often lacks a whole row of sizes and cannot be fitted.
The samples are kept in fit.json (`bootstrap.samples`) for the frontier's bands, the corner plot and reuse.

The status is "ok" only when the grid can identify the law (>= min_sizes distinct N and >= min_data_sizes
distinct D, each spanning >= min_decades) and no parameter sits at a bound or is unconstrained; otherwise
"underdetermined", with each reason in `reasons`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import chi2 as chi2_dist

from jetfm.scaling.noise import Cells, cell_means, training_scatter
from jetfm.scaling.optimise import (
    EXPONENT_MAX,
    N_PARAMS,
    NAMES,
    Problem,
    fit_central,
    refit_batch,
    to_params,
)

__all__ = ["NAMES", "analyse", "fit_law", "grid_reasons", "law"]

DEFAULTS: dict[str, Any] = {
    "bootstrap": 200,
    "seed": 0,
    "min_sizes": 4,
    "min_data_sizes": 4,
    "min_decades": 1.0,
    "min_steps": 0,
    "max_relative_uncertainty": 0.5,
    "budget": None,
    "huber_delta": 1e-3,
}


def law(params: np.ndarray | tuple[float, ...], n: np.ndarray, d: np.ndarray) -> np.ndarray:
    e, a, alpha, b, beta = params
    return e + a * np.asarray(n, float) ** -alpha + b * np.asarray(d, float) ** -beta


def _interval(values: np.ndarray) -> dict[str, float]:
    p = np.percentile(values, [2.5, 16, 50, 84, 97.5])
    return {
        "uncertainty": float((p[3] - p[1]) / 2),
        "p2.5": float(p[0]),
        "p16": float(p[1]),
        "median": float(p[2]),
        "p84": float(p[3]),
        "p97.5": float(p[4]),
        "std": float(np.std(values, ddof=1)),
    }


def _problem(
    c: Cells, kind: str, delta: float, loss: np.ndarray | None = None, sigma: np.ndarray | None = None
) -> Problem:
    return Problem(
        np.log(c.n),
        np.log(c.d),
        c.loss if loss is None else loss,
        c.sigma if sigma is None else sigma,
        kind,
        delta,
    )


def _chi2(params: np.ndarray, c: Cells) -> float:
    return float(np.sum(((law(params, c.n, c.d) - c.loss) / c.sigma) ** 2))


def fit_law(
    c: Cells,
    bootstrap: int = 200,
    seed: int = 0,
    delta: float = 1e-3,
    lbfgs_starts: int = 4,
    grid_starts: int = 4,
) -> dict[str, Any]:
    """Central Huber fit and WLS fit, chi^2/ndf of both under the noise model, parametric bootstrap of the
    Huber fit (samples in `_samples`, shape (bootstrap, 5))."""
    x_h, obj_h = fit_central(_problem(c, "huber", delta), lbfgs_starts)
    x_w, chi2_w = fit_central(_problem(c, "wls", delta), lbfgs_starts)
    p_h, p_w = to_params(x_h), to_params(x_w)
    ndf = len(c.loss) - N_PARAMS
    scale = math.sqrt(max(1.0, chi2_w / ndf)) if ndf > 0 else 1.0
    rng = np.random.default_rng(seed)
    samples = np.empty((0, N_PARAMS))
    if bootstrap > 0:
        sigma = c.sigma * scale
        draws = law(p_h, c.n, c.d)[None, :] + rng.normal(0.0, 1.0, (bootstrap, len(c.loss))) * sigma
        draws = np.maximum(draws, 1e-6)
        boot = _problem(c, "huber", delta, draws, np.broadcast_to(sigma, draws.shape))
        samples = to_params(refit_batch(boot, x_h, grid_starts))
    residuals = c.loss - law(p_h, c.n, c.d)
    out: dict[str, Any] = {
        "estimator": f"Huber (delta={delta:g}) on log residuals, L-BFGS from a grid of initialisations",
        "parameters": {
            name: {"value": float(p_h[i]), **(_interval(samples[:, i]) if len(samples) > 2 else {})}
            for i, name in enumerate(NAMES)
        },
        "wls": {"parameters": {name: float(p_w[i]) for i, name in enumerate(NAMES)}, "chi2": chi2_w},
        "goodness_of_fit": {
            "noise_model": "sigma^2 = validation SEM^2 + (training scatter x loss)^2 / seeds",
            "chi2": chi2_w,
            "ndf": ndf,
            "chi2_per_ndf": chi2_w / ndf if ndf > 0 else None,
            "p_value": float(chi2_dist.sf(chi2_w, ndf)) if ndf > 0 else None,
            "chi2_huber_fit": _chi2(p_h, c),
            "huber_objective": obj_h,
            "rms_residual": float(np.sqrt(np.mean(residuals**2))),
            "max_abs_pull": float(np.max(np.abs(residuals / c.sigma))),
        },
        "bootstrap": {
            "kind": "parametric (loss redrawn from the fitted law with the noise model's error)",
            "replicates": len(samples),
            "error_scale": scale,
            "seed": seed,
            "samples_columns": list(NAMES),
            "samples": samples.tolist(),
        },
        "cells": len(c.loss),
    }
    out["_samples"] = samples
    out["_x"] = x_h
    return out


def grid_reasons(c: Cells, cfg: dict[str, Any]) -> list[str]:
    """Why this grid cannot identify the law (empty when it can)."""
    reasons = []
    for label, values, need in (
        ("model sizes N", c.n, cfg["min_sizes"]),
        ("data sizes D", c.d, cfg["min_data_sizes"]),
    ):
        distinct = np.unique(values)
        decades = float(np.log10(distinct.max() / distinct.min())) if len(distinct) else 0.0
        if len(distinct) < need:
            reasons.append(f"{len(distinct)} distinct {label} (need >= {need})")
        if decades < cfg["min_decades"]:
            reasons.append(f"{label} span {decades:.2f} decades (need >= {cfg['min_decades']:g})")
    return reasons


def parameter_reasons(fit: dict[str, Any], c: Cells, max_rel: float) -> list[str]:
    """Parameters at a bound of the fit's box, or that the bootstrap leaves unconstrained."""
    reasons = []
    p = {k: v["value"] for k, v in fit["parameters"].items()}
    if p["E"] < 1e-3 * float(c.loss.min()):
        reasons.append(f"E = {p['E']:.3g} sits at its lower bound 0")
    for name in ("alpha", "beta"):
        if p[name] < 1e-3 or p[name] > EXPONENT_MAX - 1e-3:
            reasons.append(f"{name} = {p[name]:.3g} sits at a bound of [0, {EXPONENT_MAX:g}]")
    for name in ("E", "alpha", "beta"):
        unc = fit["parameters"][name].get("uncertainty")
        if unc is None:
            reasons.append(f"{name}: no bootstrap uncertainty")
        elif unc > max_rel * abs(p[name]):
            reasons.append(f"{name} = {p[name]:.3g} ± {unc:.2g}: relative uncertainty above {max_rel:.0%}")
    for name in ("A", "B"):
        par = fit["parameters"][name]
        if "p16" in par and math.log10(par["p84"] / par["p16"]) > 2.0:
            reasons.append(
                f"{name}: the 68 % interval [{par['p16']:.3g}, {par['p84']:.3g}] spans > 1 decade either side"
            )
    return reasons


def _rows_used(rows: list[dict[str, Any]], min_steps: int) -> tuple[list[dict[str, Any]], list[str]]:
    kept, excluded = [], []
    for r in rows:
        if min_steps and int(float(r.get("steps") or 0)) < min_steps:
            excluded.append(str(r.get("cell", f"N={r['N']} D={r['D']}")))
        else:
            kept.append(r)
    return kept, excluded


def analyse(
    rows: list[dict[str, Any]],
    fit_cfg: dict[str, Any] | None = None,
    curves: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole analysis of a sweep's runs.csv rows (+ learning curves): noise model, fit, status, frontier,
    approaches 1 and 2, repetition."""
    from jetfm.scaling.approaches import compare_approaches
    from jetfm.scaling.frontier import frontier
    from jetfm.scaling.repetition import analyse_repetition

    cfg = {**DEFAULTS, **(fit_cfg or {})}
    used, excluded = _rows_used(rows, int(cfg["min_steps"]))
    result: dict[str, Any] = {
        "law": "L(N, D) = E + A / N^alpha + B / D^beta",
        "N": "non-embedding parameters",
        "D": "training jets (single-pass cells)",
        "excluded_cells": excluded,
        "exclusion_rule": f"cells with fewer than {cfg['min_steps']} optimiser steps measure optimisation, "
        "not data: left out of every fit",
        "reasons": [],
        "notes": [],
    }
    scatter = training_scatter(used)
    result["training_noise"] = scatter
    if scatter.get("note"):
        result["notes"].append(scatter["note"])
    cells = cell_means(used, scatter["relative"])
    e_min = cells.epochs.min() if len(cells.loss) else 1
    base = cells.take(cells.epochs == e_min)
    result["grid"] = {
        "cells": len(rows),
        "cells_fitted": len(base.loss),
        "sizes": len(np.unique(base.n)),
        "data_sizes": len(np.unique(base.d)),
        "epochs": sorted({int(e) for e in cells.epochs}),
        "seeds_max": int(cells.seeds.max()) if len(cells.seeds) else 0,
        "N_range": [float(base.n.min()), float(base.n.max())] if len(base.n) else [],
        "D_range": [float(base.d.min()), float(base.d.max())] if len(base.d) else [],
    }
    result["reasons"] += grid_reasons(base, cfg)
    if len(base.loss) <= N_PARAMS or len(np.unique(base.n)) < 2 or len(np.unique(base.d)) < 2:
        result["status"] = "underdetermined"
        result["reasons"].append(f"{len(base.loss)} cells cannot determine {N_PARAMS} parameters: no fit")
        return result
    fitted = fit_law(base, int(cfg["bootstrap"]), int(cfg["seed"]), float(cfg["huber_delta"]))
    samples = fitted.pop("_samples")
    fitted.pop("_x")
    result.update(fitted)
    result["reasons"] += parameter_reasons(result, base, float(cfg["max_relative_uncertainty"]))
    result["status"] = "ok" if not result["reasons"] else "underdetermined"
    params = np.array([result["parameters"][k]["value"] for k in NAMES])
    single = [r for r in used if int(r["epochs"]) == int(e_min)]
    result["frontier"] = frontier(params, samples, single, cfg["budget"])
    result["approaches"] = compare_approaches(single, curves or [], result["frontier"]["a"])
    rep = cells.epochs > e_min
    if rep.any():
        rc = cells.take(rep)
        result["repetition"] = analyse_repetition(
            params, samples, rc.n, rc.d, rc.epochs - e_min + 1, rc.loss, rc.sigma, int(cfg["seed"]) + 1
        )
        if not result["repetition"]["constrained"]:
            result["notes"].append("R*: repetition gain poorly constrained (relative uncertainty > 50 %)")
    else:
        result["repetition"] = None
        result["notes"].append("no cells with repetitions: the effective-data gain is not fitted")
    return result


def params_of(fit: dict[str, Any]) -> np.ndarray | None:
    """The central (E, A, alpha, B, beta) of a fit.json, or None when it has no parameters."""
    if "parameters" not in fit:
        return None
    return np.array([fit["parameters"][k]["value"] for k in NAMES])


def samples_of(fit: dict[str, Any]) -> np.ndarray:
    return np.array(fit.get("bootstrap", {}).get("samples", []), float).reshape(-1, N_PARAMS)
