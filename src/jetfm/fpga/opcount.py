"""Exact operation counts of a converted hls4ml model: what the firmware multiplies, by precision.

Read from the hls4ml graph itself (weights as hls4ml holds them, input and weight types as it assigned
them), not from the PyTorch model. A multiplication by zero is not synthesised (hls4ml's latency strategy
skips zero weights), one by ±2^k is a shift (no DSP, no LUT multiplier); the rest are counted per
(input type × weight type). Pointwise Conv1D layers multiply once per particle slot. Not a resource
estimate: an exact count from which DSP/LUT use follows once the tool maps it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

WEIGHT_LAYERS = ("Dense", "PointwiseConv1D", "Conv1D")


def _is_power_of_two(w: np.ndarray) -> np.ndarray:
    a = np.abs(w)
    m, _ = np.frexp(a)
    return (a > 0) & (m == 0.5)


def operation_counts(model: Any) -> dict[str, Any]:
    """Per weight layer and in total: weights, non-zero weights, multiplications (by precision), shifts."""
    layers = []
    totals: Counter[str] = Counter()
    by_precision: Counter[str] = Counter()
    for layer in model.get_layers():
        if layer.class_name not in WEIGHT_LAYERS:
            continue
        w = np.asarray(layer.weights["weight"].data, dtype=np.float64)
        positions = 1
        if "Conv1D" in layer.class_name:
            positions = int(layer.get_attr("out_width"))
        nonzero = int(np.count_nonzero(w))
        shifts = int(_is_power_of_two(w).sum())
        in_t = str(layer.get_input_variable().type.precision)
        w_t = str(layer.weights["weight"].type.precision)
        mults = (nonzero - shifts) * positions
        key = f"{in_t} x {w_t}"
        by_precision[key] += mults
        entry = {
            "layer": layer.name, "class": layer.class_name, "weights": int(w.size),
            "nonzero_weights": nonzero,
            "positions": positions, "multiplications": mults, "shifts": shifts * positions,
            "additions": nonzero * positions, "input_type": in_t, "weight_type": w_t,
        }  # fmt: skip
        layers.append(entry)
        for k in ("weights", "nonzero_weights", "multiplications", "shifts", "additions"):
            totals[k] += entry[k]
    return {"layers": layers, "totals": dict(totals), "multiplications_by_precision": dict(by_precision)}
