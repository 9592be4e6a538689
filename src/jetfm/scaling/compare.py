"""Side by side fits of two or more sweeps (e.g. scratch vs fine-tuned from a pretrained backbone): does
pretraining shift the law? Each parameter with its bootstrap uncertainty, and each sweep's difference from
the first in units of the combined uncertainty (the sweeps are independent runs)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from jetfm.atomic import write_text_atomic
from jetfm.scaling.fit import NAMES

QUANTITIES = (*NAMES, "a")  # the law's parameters and the frontier exponent N_opt ∝ C^a


def _quantity(fit: dict[str, Any], name: str) -> dict[str, float]:
    return fit["frontier"]["a"] if name == "a" else fit["parameters"][name]


def compare_fits(fit_paths: dict[str, str | Path], out_csv: str | Path) -> list[dict[str, Any]]:
    """One row per (sweep, quantity): value, uncertainty, and (value - first) / sqrt(u^2 + u_first^2)."""
    fits = {label: json.loads(Path(p).read_text()) for label, p in fit_paths.items()}
    not_ok = [label for label, fit in fits.items() if fit.get("status") != "ok"]
    if not_ok:
        raise ValueError(f"scaling fits {not_ok} have no fitted law (status not 'ok'): nothing to compare")
    first_label = next(iter(fits))
    rows = []
    for name in QUANTITIES:
        ref = _quantity(fits[first_label], name)
        for label, fit in fits.items():
            q = _quantity(fit, name)
            sigma = math.hypot(q.get("uncertainty", math.nan), ref.get("uncertainty", math.nan))
            pull = (q["value"] - ref["value"]) / sigma if label != first_label and sigma > 0 else math.nan
            rows.append({"sweep": label, "quantity": name, "value": q["value"],
                         "uncertainty": q.get("uncertainty", math.nan), "pull_vs_first": pull})  # fmt: skip
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_csv, buf.getvalue())
    return rows
