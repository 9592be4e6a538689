"""The noise model of a cell's loss: validation-set sampling (the standard error over validation jets) plus
training noise (seed to seed scatter), measured on the cells that the seed axis repeats.

Every cell is scored on the same validation jets, so two seeds of one cell share their validation noise and
differ by training noise only: the pooled variance across seeds estimates it. It is expressed relative to the
loss (pooled variance of log loss) so one number serves cells of any loss, and added in quadrature to every
cell's standard error; a cell run with k seeds enters the fit as their mean with training variance / k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SIGMA_FLOOR = 1e-4  # relative: a cell's weight never exceeds that of a 0.01 % loss error


@dataclass(frozen=True)
class Cells:
    """What a fit sees, one entry per (N, D, epochs): loss (mean over seeds) and its total error."""

    n: np.ndarray
    d: np.ndarray
    epochs: np.ndarray
    loss: np.ndarray
    sigma: np.ndarray
    seeds: np.ndarray

    def take(self, mask: np.ndarray) -> Cells:
        return Cells(*(getattr(self, k)[mask] for k in ("n", "d", "epochs", "loss", "sigma", "seeds")))


def training_scatter(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Relative seed-to-seed scatter pooled over the cells run with more than one seed."""
    groups: dict[tuple[float, float, int], list[float]] = {}
    for r in rows:
        groups.setdefault((float(r["N"]), float(r["D"]), int(r["epochs"])), []).append(float(r["val_loss"]))
    ss, dof = 0.0, 0
    for losses in groups.values():
        if len(losses) > 1:
            logs = np.log(losses)
            ss += float(np.sum((logs - logs.mean()) ** 2))
            dof += len(losses) - 1
    if dof == 0:
        return {
            "relative": 0.0,
            "dof": 0,
            "replicated_cells": 0,
            "note": "no seed axis: training noise is not modelled, errors are validation noise only",
        }
    rel = math.sqrt(ss / dof)
    return {
        "relative": rel,
        "dof": dof,
        "replicated_cells": sum(len(v) > 1 for v in groups.values()),
        "relative_uncertainty": rel / math.sqrt(2 * dof),
    }


def cell_means(rows: list[dict[str, Any]], scatter: float) -> Cells:
    """One entry per (N, D, epochs): mean loss over seeds, error^2 = SEM^2 + (scatter * loss)^2 / seeds."""
    groups: dict[tuple[float, float, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((float(r["N"]), float(r["D"]), int(r["epochs"])), []).append(r)
    keys = sorted(groups)
    out: dict[str, list[float]] = {k: [] for k in ("n", "d", "epochs", "loss", "sigma", "seeds")}
    for key in keys:
        members = groups[key]
        loss = float(np.mean([float(r["val_loss"]) for r in members]))
        sem = float(np.mean([float(r.get("val_loss_sem") or 0.0) for r in members]))
        var = sem**2 + (scatter * loss) ** 2 / len(members)
        for name, value in zip(
            out, (*key, loss, max(math.sqrt(var), SIGMA_FLOOR * loss), len(members)), strict=True
        ):
            out[name].append(value)
    return Cells(*(np.array(out[k], dtype=float) for k in out))
