"""The per-cell learning rate: a rule in width and step count, a search around it that extends itself once
when the best candidate sits on an edge, and the calibration of the rule from scans on the grid's corners.

Rule (after mvigl/scaling-laws-demo, which fits eta* = 5.35e-3 (w/64)^-0.374 (T/2048)^-0.617 on its
teacher-student grid): eta*(w, T) = base (w / ref_width)^-width_exponent (T / ref_steps)^-steps_exponent.
A width-only rule leaves short cells under-trained and long ones unstable (biasing beta). The exponents are
not universal: `calibrate` fits them to the best learning rates of the corner cells (smallest and largest
width x fewest and most steps) scanned over a wide multiplier grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

MIN_GRID_WIDTH = 8.0  # the multiplier grid must span at least this factor (issue 27)


def centre(lr: dict[str, Any], width: int, steps: int) -> float:
    """eta*(w, T) of the rule."""
    return (
        lr["base"]
        * (width / lr["ref_width"]) ** (-lr["width_exponent"])
        * (steps / lr["ref_steps"]) ** (-lr["steps_exponent"])
    )


def check_multipliers(multipliers: list[float], label: str = "scaling.lr.multipliers") -> None:
    """One multiplier is the rule alone; a search grid must span >= MIN_GRID_WIDTH."""
    if len(multipliers) > 1 and max(multipliers) / min(multipliers) < MIN_GRID_WIDTH * (1 - 1e-9):
        raise ValueError(
            f"{label} {multipliers} span {max(multipliers) / min(multipliers):.3g}x: a search grid must span "
            f">= {MIN_GRID_WIDTH:g}x (or give one multiplier for the rule alone)"
        )


def search(train_at: Callable[[float], float], lrs: list[float], extend: int = 1) -> dict[str, Any]:
    """Train at every candidate; while the best sits on an edge of the grid (and `extend` allows), add one
    candidate beyond that edge (one grid step further, in ratio) and train it. Returns the candidates in
    ascending lr with their losses, the best index, the extensions run, and whether it still sits on an edge.
    """
    lrs = sorted(lrs)
    losses = {lr: train_at(lr) for lr in lrs}
    extended = 0
    while len(lrs) > 1 and extended < extend:
        ordered = sorted(losses)
        best = min(ordered, key=lambda x: (math.isnan(losses[x]), losses[x]))
        if best == ordered[0]:
            new = ordered[0] * ordered[0] / ordered[1]
        elif best == ordered[-1]:
            new = ordered[-1] * ordered[-1] / ordered[-2]
        else:
            break
        new = float(f"{new:.6g}")
        losses[new] = train_at(new)
        extended += 1
    ordered = sorted(losses)
    values = [losses[x] for x in ordered]
    best_i = int(np.nanargmin(values))
    return {
        "lrs": ordered,
        "losses": values,
        "best": best_i,
        "extended": extended,
        "at_edge": len(ordered) > 1 and best_i in (0, len(ordered) - 1),
    }


def optimum(lrs: list[float], losses: list[float]) -> float:
    """The best lr of a scan, refined by a parabola in log lr through the best point and its neighbours."""
    i = int(np.nanargmin(losses))
    if i in (0, len(lrs) - 1):
        return float(lrs[i])
    x = np.log(lrs[i - 1 : i + 2])
    a, b, _ = np.polyfit(x, losses[i - 1 : i + 2], 2)
    return float(np.exp(-b / (2 * a))) if a > 0 else float(lrs[i])


def calibration_points(result_paths: list[str]) -> list[dict[str, Any]]:
    """{cell, width, steps, lrs, losses} of cells' result.json files (those with a search of >= 3 rates)."""
    import json
    from pathlib import Path

    points = []
    for path in result_paths:
        r = json.loads(Path(path).read_text())
        if len(r.get("lr_candidates", [])) >= 3:
            width = int(r["provenance"]["cell_settings"]["size"]["embed_dim"])
            points.append({"cell": r["cell"], "width": width, "steps": int(r["steps"]),
                           "lrs": r["lr_candidates"], "losses": r["lr_losses"]})  # fmt: skip
    return points


def calibrate(points: list[dict[str, Any]], ref_width: int, ref_steps: int) -> dict[str, Any]:
    """Fit log eta* = log base - p log(w / ref_width) - c log(T / ref_steps) to scanned cells
    {width, steps, lrs, losses}; with fewer than 3 distinct (w, T) the exponents are not identified."""
    if len({(p["width"], p["steps"]) for p in points}) < 3:
        raise ValueError("the learning-rate calibration needs scans of >= 3 distinct (width, steps) cells")
    eta = np.array([optimum(p["lrs"], p["losses"]) for p in points])
    x = np.column_stack(
        [
            np.ones(len(points)),
            -np.log([p["width"] / ref_width for p in points]),
            -np.log([p["steps"] / ref_steps for p in points]),
        ]
    )
    coef, *_ = np.linalg.lstsq(x, np.log(eta), rcond=None)
    edge = [p.get("cell", "?") for p in points if int(np.nanargmin(p["losses"])) in (0, len(p["losses"]) - 1)]
    return {
        "base": float(np.exp(coef[0])),
        "ref_width": ref_width,
        "ref_steps": ref_steps,
        "width_exponent": float(coef[1]),
        "steps_exponent": float(coef[2]),
        "optima": [
            {"cell": p.get("cell"), "width": p["width"], "steps": p["steps"], "lr": float(e)}
            for p, e in zip(points, eta, strict=True)
        ],
        "at_edge": edge,
    }
