"""Trigger operating points: per signal class, the firmware threshold that keeps a fixed fraction of the
background (QCD) jets, and the signal efficiency there.

A trigger cuts on the discriminant s = p_X / (p_X + p_QCD) (the JetClass convention of `train.metrics`).
s = sigmoid(l_X - l_QCD) is monotonic in the logit difference, so the firmware compares one subtraction of
its own outputs against a constant: no softmax, no division. The threshold is therefore stated on
l_X - l_QCD, measured on the emulated (bit-exact firmware) logits. The teacher is scored at the same
background efficiency for scale (log-probabilities differ from its logits by a per-jet constant only).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_RATES = (0.01, 0.1)


def threshold_at(background: np.ndarray, rate: float) -> tuple[float, float]:
    """The smallest threshold t with fraction(background >= t) <= rate, and that fraction.

    Fixed-point outputs tie, so the achieved rate can sit below the target; it is reported, never rounded
    up. When even the highest background value passes too many jets, t lies just above it (rate 0)."""
    n = len(background)
    values = np.unique(background)  # ascending
    passing = n - np.searchsorted(np.sort(background), values, side="left")  # jets >= each value
    ok = np.flatnonzero(passing <= math.floor(rate * n + 1e-9))  # counts: 0.3 * 10 jets is 3, not 3.0000001
    if ok.size == 0:
        return float(np.nextafter(values[-1], np.inf)), 0.0
    return float(values[ok[0]]), float(passing[ok[0]] / n)


def _efficiency(k: int, n: int) -> dict[str, Any]:
    e = k / n if n else float("nan")
    return {"efficiency": e, "stat_unc": math.sqrt(e * (1 - e) / n) if n else float("nan"), "n": n}


def operating_points(
    scores: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    rates: tuple[float, ...] = DEFAULT_RATES,
    background: str = "QCD",
    reference: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per signal class and background rate: threshold on score_X - score_bkg, the achieved background
    efficiency, the signal efficiency (binomial uncertainty) and, given `reference` scores (the teacher's
    log-probabilities), the reference's signal efficiency at its own threshold for the same rate.

    `scores`: (jets, classes) logits or log-probabilities. {} without a background class in `classes`."""
    if background not in classes:
        return {}
    b = classes.index(background)
    is_bkg = labels == b
    n_bkg = int(is_bkg.sum())
    points: dict[str, Any] = {"background": background, "n_background": n_bkg, "classes": {}}
    for c, name in enumerate(classes):
        is_sig = labels == c
        if c == b or not is_sig.any() or n_bkg == 0:
            continue
        rows = []
        for rate in rates:
            row: dict[str, Any] = {"target_background_efficiency": rate}
            for key, s in (("student", scores), ("reference", reference)):
                if s is None:
                    continue
                d = s[:, c] - s[:, b]
                t, achieved = threshold_at(d[is_bkg], rate)
                row[key] = {
                    "threshold": t,
                    "background_efficiency": achieved,
                    "signal": _efficiency(int((d[is_sig] >= t).sum()), int(is_sig.sum())),
                }
            # fewer than 1 expected background jet above the cut: the rate is not resolved by the sample
            row["resolved"] = n_bkg * rate >= 1
            rows.append(row)
        points["classes"][name] = rows
    return points


def table_rows(student: str, points: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (one per class and rate) for trigger.csv."""
    out = []
    for name, rows in points.get("classes", {}).items():
        for row in rows:
            s, r = row["student"], row.get("reference")
            out.append({
                "student": student, "signal": name, "background": points["background"],
                "target_background_efficiency": row["target_background_efficiency"],
                "threshold_logit_difference": f"{s['threshold']:.6g}",
                "background_efficiency": f"{s['background_efficiency']:.4g}",
                "signal_efficiency": f"{s['signal']['efficiency']:.4f}",
                "signal_efficiency_unc": f"{s['signal']['stat_unc']:.4f}",
                "teacher_signal_efficiency": f"{r['signal']['efficiency']:.4f}" if r else "",
                "n_signal": s["signal"]["n"], "n_background": points["n_background"],
                "resolved": row["resolved"],
            })  # fmt: skip
    return out
