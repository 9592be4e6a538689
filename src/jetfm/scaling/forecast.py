"""The uncertainties a planned grid should give, before any GPU-hour is spent: cells drawn from a reference
law with a reference sweep's noise model, fitted as a real sweep is.

The reference is a measured sweep (its fit.json and runs.csv): its law (E, A, alpha, B, beta), its per-jet
spread of the cross-entropy (a cell's standard error is spread / sqrt(test jets)) and its relative training
scatter (the seed axis). The planned grid's cells (N from the sizes, D, epochs) get the law's loss plus that
noise, `trials` times; each draw is fitted with the bootstrap, and the median uncertainties are reported.
The law is extrapolated: the forecast is only as good as the assumption that the reference law holds there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from jetfm.scaling.grid import approx_parameters, cell_steps, cells, test_jets


def reference_noise(fit: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per-jet cross-entropy spread (median over cells) and relative training scatter of a measured sweep."""
    spread = [
        float(r["val_loss_sem"]) * math.sqrt(float(r["val_jets"])) for r in rows if r.get("val_loss_sem")
    ]
    return {
        "per_jet_spread": float(np.median(spread)),
        "training_scatter": float(fit.get("training_noise", {}).get("relative", 0.0)),
    }


def forecast(
    config: dict[str, Any], fit: dict[str, Any], rows: list[dict[str, Any]], trials: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Median bootstrap uncertainty of every parameter over `trials` synthetic sweeps of config's grid."""
    from jetfm.scaling.fit import NAMES, analyse, law, params_of

    truth = params_of(fit)
    if truth is None:
        raise ValueError("the reference fit has no parameters (its status is underdetermined without a fit)")
    section = config["scaling"]
    noise = reference_noise(fit, rows)
    batch = section["train"].get("batch_size", 64)
    sem = noise["per_jet_spread"] / math.sqrt(test_jets(section))
    grid = cells(section)
    rng = np.random.default_rng(seed)
    results = []
    for trial in range(trials):
        synthetic = []
        for c in grid:
            n = float(approx_parameters(section["sizes"][c.size]))
            true = float(law(truth, np.array([n]), np.array([float(c.jets)]))[0])
            loss = true + rng.normal(0, sem) + rng.normal(0, noise["training_scatter"] * true)
            synthetic.append({"cell": c.id, "N": n, "D": c.jets, "epochs": 1, "val_loss": loss,
                              "val_loss_sem": sem, "steps": cell_steps(section, c, batch),
                              "flops": 6 * n * c.jets, "jets_seen": c.jets})  # fmt: skip
        fitted = analyse(synthetic, {**section["fit"], "seed": seed + trial})
        if "parameters" in fitted:
            results.append({k: fitted["parameters"][k].get("uncertainty", math.nan) for k in NAMES})
    if not results:
        raise ValueError("no synthetic sweep of this grid could be fitted: it cannot determine the law")
    median = {k: float(np.nanmedian([r[k] for r in results])) for k in NAMES}
    return {
        "reference_law": {k: float(v) for k, v in zip(NAMES, truth, strict=True)},
        "noise": {**noise, "cell_sem": sem},
        "cells": len(grid),
        "trials": len(results),
        "uncertainty": median,
        "relative_uncertainty": {k: median[k] / abs(float(truth[i])) for i, k in enumerate(NAMES)},
        "note": "cells drawn from the reference law extrapolated to this grid's N and D (single pass, no "
        "repetition gain): the forecast holds only as far as that law does",
    }


def read_reference(fit_json: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A measured sweep's fit.json and the runs.csv beside it."""
    import json

    from jetfm.scaling.runs import read_runs

    path = Path(fit_json)
    return json.loads(path.read_text()), read_runs(path.with_name("runs.csv"))
