"""runs.csv: one row per cell, collected from the cells' result.json files (the fit's only input)."""

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


def collect(result_paths: list[str | Path], out_csv: str | Path) -> list[dict[str, Any]]:
    """Write runs.csv from the cells' result.json (sorted by N, D, epochs); return the rows."""
    rows = []
    for path in result_paths:
        result = json.loads(Path(path).read_text())
        missing = [c for c in COLUMNS if c not in result]
        if missing:
            raise ValueError(f"scaling cell result {path} lacks field(s) {missing}")
        rows.append({c: result[c] for c in COLUMNS})
    rows.sort(key=lambda r: (r["N"], r["D"], r["epochs"], r["cell"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_csv, buf.getvalue())
    return rows


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} has no cells")
    return rows
