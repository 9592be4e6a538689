"""The robustness table: one row per (model, predictor, sample) from every model's evaluation.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jetfm.train.compare import write_rows_csv

COLUMNS = (
    "model", "kind", "sample", "events", "accuracy", "accuracy_drop", "macro_auc", "auc_drop",
    "output_tv", "output_js", "argmax_flip", "nll", "ece", "temperature", "nll_ts", "ece_ts", "members",
    "accuracy_seed_std", "accuracy_drop_seed_mean", "accuracy_drop_seed_std", "auc_drop_seed_std",
    "ece_seed_mean", "ece_seed_std", "output_tv_seed_mean", "output_tv_seed_std", "spread", "mutual_info",
)  # fmt: skip


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.5g}"
    return "" if value is None else value


def table_rows(evaluations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the table, models in the given order, samples in evaluation order (test, nominal, shifts)."""
    rows = []
    for ev in evaluations:
        for kind in ("single", "ensemble"):
            for sample in ev["samples"]:
                values = ev.get(kind, {}).get(sample)
                if values is None:
                    continue
                row = {"model": ev["model"], "kind": kind, "sample": sample}
                row.update({k: _fmt(values.get(k)) for k in COLUMNS[3:]})
                rows.append(row)
    return rows


def write_table(evaluation_files: Sequence[str | Path], out: str | Path) -> list[dict[str, Any]]:
    """robustness.csv from the per-model evaluation.json files; returns the evaluations."""
    evaluations = [json.loads(Path(p).read_text()) for p in evaluation_files]
    write_rows_csv(out, table_rows(evaluations), COLUMNS)
    return evaluations
