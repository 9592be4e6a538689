"""The test-split comparison table of trained models (one row per run, read from each metrics.json)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from jetfm.atomic import write_text_atomic

COLUMNS = (
    "model",
    "parameters",
    "flops_per_jet",
    "accuracy",
    "macro_auc",
    "macro_f1",
    "ece",
    "n_test",
    "steps",
)


def comparison_rows(metrics_files: list[str]) -> list[dict[str, object]]:
    rows = []
    for path in metrics_files:
        m = json.loads(Path(path).read_text())
        row: dict[str, object] = {
            "model": m["model"], "parameters": m["parameters"], "flops_per_jet": f"{m['flops_per_jet']:.4g}",
            "accuracy": f"{m['accuracy']:.4f}",
            "macro_auc": f"{m['macro_auc']:.4f}" if m["macro_auc"] else "",
            "macro_f1": f"{m['macro_f1']:.4f}", "ece": f"{m['ece']:.4f}",
            "n_test": m["n"], "steps": m["steps"],
        }  # fmt: skip
        for name, r in sorted(m.get("rejection", {}).items()):
            rej = r["rejection_at_50"]  # None: no QCD jet passed, only a bound
            row[f"rej50_{name}"] = f"{rej:.3g}" if rej is not None else f">{r['n_background']}"
        rows.append(row)
    return rows


def write_rows_csv(out: str | Path, rows: list[dict[str, object]], columns: tuple[str, ...]) -> None:
    """CSV of `rows` (atomically): `columns` first, then any other keys sorted; missing values empty."""
    extra = sorted({k for r in rows for k in r} - set(columns))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*columns, *extra], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out, buf.getvalue())


def write_comparison(metrics_files: list[str], out: str | Path) -> list[dict[str, object]]:
    """CSV with accuracy, macro AUC, F1, ECE and QCD rejection at 50 % signal efficiency per model."""
    rows = comparison_rows(metrics_files)
    write_rows_csv(out, rows, COLUMNS)
    return rows
