"""runs.csv: one row per cell, collected from the cells' result.json files (the fit's input), and
curves.csv beside it: every cell's learning curve (the measured points of Chinchilla's approaches 1 and 2)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from jetfm.atomic import write_text_atomic

COLUMNS = (
    "cell", "size", "N", "N_total", "D", "epochs", "steps", "batch_size", "jets_seen", "lr", "lr_at_edge",
    "val_loss", "val_loss_sem", "val_jets", "flops", "flops_6ND", "flops_ratio_6ND", "flops_ratio_6ND_total",
    "particles_per_jet", "train_wall_s", "wall_s",
)  # fmt: skip
# Written when a cell's result has them (cells of earlier versions, synthetic tests may not).
OPTIONAL = (
    "seed", "replica", "lr_extended", "best_step", "still_improving", "val_loss_selection", "scored_on",
    "flops_pretrain",
)  # fmt: skip
CURVE_COLUMNS = ("cell", "N", "D", "epochs", "replica", "step", "jets_seen", "val_loss")


def curves_path(runs_csv: str | Path) -> Path:
    return Path(runs_csv).with_name("curves.csv")


def _write_csv(path: str | Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def collect(result_paths: list[str | Path], out_csv: str | Path) -> list[dict[str, Any]]:
    """Write runs.csv from the cells' result.json (sorted by N, D, epochs); return the rows."""
    rows, curves = [], []
    for path in result_paths:
        result = json.loads(Path(path).read_text())
        missing = [c for c in COLUMNS if c not in result]
        if missing:
            raise ValueError(f"scaling cell result {path} lacks field(s) {missing}")
        rows.append({c: result.get(c, "") for c in COLUMNS + OPTIONAL})
        for point in result.get("curve", []):
            curves.append({**{c: result.get(c, 0) for c in CURVE_COLUMNS[:5]}, **point})
    rows.sort(key=lambda r: (r["N"], r["D"], r["epochs"], r["cell"]))
    curves.sort(key=lambda r: (r["N"], r["D"], r["epochs"], r["cell"], r["step"]))
    _write_csv(out_csv, COLUMNS + OPTIONAL, rows)
    _write_csv(curves_path(out_csv), CURVE_COLUMNS, curves)
    return rows


def read_curves(runs_csv: str | Path) -> list[dict[str, Any]]:
    """The learning-curve points next to runs.csv (empty when the sweep has none)."""
    path = curves_path(runs_csv)
    if not path.is_file():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} has no cells")
    return rows
