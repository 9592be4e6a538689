"""Repeated data as effective data (Muennighoff et al. 2023): E passes over U unique jets are worth
D' = U (1 + R* (1 - exp(-(E - 1) / R*))) fresh jets, so the gain D'/U grows with E but never beyond
omega = 1 + R*. R* is fitted on the repeated cells with the law's parameters held at the single-pass fit;
its uncertainty comes from refitting R* for every bootstrap sample of the law, on loss values redrawn from the
noise model, so it carries the law's uncertainty too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

LOG_R_BOUNDS = (-7.0, 9.0)


def effective_data(unique: np.ndarray, epochs: np.ndarray, r_star: float) -> np.ndarray:
    """D' = U (1 + R* (1 - exp(-(E - 1)/R*))): repeated passes are worth less and less (bounded by 1 + R*)."""
    reps = np.asarray(epochs, float) - 1.0
    return np.asarray(unique, float) * (1.0 + r_star * (1.0 - np.exp(-reps / r_star)))


def gain(epochs: float, r_star: float) -> float:
    """D'/U after `epochs` passes."""
    return float(effective_data(np.array(1.0), np.array(epochs), r_star))


def _law(p: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return p[0] + p[1] * n ** -p[2] + p[3] * d ** -p[4]


def fit_r_star(
    params: np.ndarray, n: np.ndarray, u: np.ndarray, epochs: np.ndarray, loss: np.ndarray, sigma: np.ndarray
) -> float:
    """R* minimising chi^2 of the repeated cells with the law fixed (bounded search in log R*)."""

    def chi2(log_r: float) -> float:
        pred = _law(params, n, effective_data(u, epochs, math.exp(log_r)))
        return float(np.sum(((pred - loss) / sigma) ** 2))

    grid = np.linspace(*LOG_R_BOUNDS, 33)
    start = grid[int(np.argmin([chi2(g) for g in grid]))]
    lo, hi = max(LOG_R_BOUNDS[0], start - 0.5), min(LOG_R_BOUNDS[1], start + 0.5)
    return math.exp(float(minimize_scalar(chi2, bounds=(lo, hi), method="bounded").x))


def analyse_repetition(
    params: np.ndarray,
    samples: np.ndarray,
    n: np.ndarray,
    u: np.ndarray,
    epochs: np.ndarray,
    loss: np.ndarray,
    sigma: np.ndarray,
    seed: int = 0,
) -> dict[str, Any]:
    """R*, omega = 1 + R* and the gain D'/U at the largest E of the grid, each with a bootstrap interval."""
    r_star = fit_r_star(params, n, u, epochs, loss, sigma)
    rng = np.random.default_rng(seed)
    boot = np.array(
        [
            fit_r_star(
                p, n, u, epochs, _law(p, n, effective_data(u, epochs, r_star)) + rng.normal(0, sigma), sigma
            )
            for p in samples
        ]
    )
    # Parametric bootstrap: the spread of the refits around r_star estimates the estimator's spread.
    e_max = float(epochs.max())

    def summary(value: float, values: np.ndarray) -> dict[str, float]:
        if len(values) < 3:
            return {"value": value}
        lo, hi = np.percentile(values, [16, 84])
        return {"value": value, "uncertainty": float((hi - lo) / 2), "p16": float(lo), "p84": float(hi)}

    out = {
        "formula": "D' = U (1 + R* (1 - exp(-(E - 1) / R*))), gain D'/U, bounded by omega = 1 + R*",
        "R_star": summary(r_star, boot),
        "omega": summary(1 + r_star, 1 + boot),
        "gain_at_max_epochs": {
            "epochs": e_max,
            **summary(gain(e_max, r_star), np.array([gain(e_max, r) for r in boot])),
        },
        "cells": len(loss),
    }
    unc = out["R_star"].get("uncertainty")
    out["constrained"] = bool(unc is not None and unc < 0.5 * r_star)
    return out
