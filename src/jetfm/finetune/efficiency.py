"""The data-efficiency result: metric vs number of labelled jets, per method, mean and spread over seeds.

Generic on purpose (method names are free strings): fine-tuning from each pretrained backbone and from
scratch use it here, the jet-images stage for its own methods. Input rows are one trained run each,
`{"method", "fraction", "jets", "seed", <metric>: value, ...}`; `efficiency_row` makes one from a run's
metrics.json (`jetfm.train.metrics.classification_metrics`). Output: a CSV (one line per method x fraction)
and a JSON (the same summary plus every run), and one figure with a panel per metric.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jetfm.atomic import write_json_atomic, write_text_atomic
from jetfm.figures import save_figure

# metric key -> axis label
METRICS: dict[str, str] = {
    "accuracy": "test accuracy",
    "macro_auc": "macro AUC (one vs rest)",
    "macro_f1": "macro F1",
    "rejection50": "QCD rejection at 50 % signal eff.\n(geometric mean over X vs QCD)",
}


# validation numbers a fine-tuning run records for its selected weights (the headline chooses on these)
VALIDATION = ("val_accuracy", "val_loss")


def mean_rejection(metrics: dict[str, Any], key: str = "rejection_at_50") -> float | None:
    """Geometric mean over the X-vs-QCD pairs of the background rejection; where no QCD jet passed, the
    lower bound (number of QCD test jets) is used. None without any pair."""
    values = []
    for r in metrics.get("rejection", {}).values():
        v = r.get(key)
        values.append(float(v) if v is not None else float(r["n_background"]))
    return float(np.exp(np.mean(np.log(values)))) if values else None


def efficiency_row(
    metrics: dict[str, Any], method: str, fraction: float, jets: int, seed: int
) -> dict[str, Any]:
    """One run's row from its metrics.json content (keys of METRICS, plus the sizes, and the validation
    numbers of the selected (best-validation) weights when the run kept them)."""
    selected = metrics.get("selected")
    return {
        "method": method, "fraction": float(fraction), "jets": int(jets), "seed": int(seed),
        "accuracy": metrics["accuracy"], "macro_auc": metrics.get("macro_auc"),
        "macro_f1": metrics["macro_f1"],
        "rejection50": mean_rejection(metrics), "n_test": metrics.get("n"),
        **{k: v for k, v in ((selected or {}).get("validation") or {}).items() if k in VALIDATION},
    }  # fmt: skip


def _spread(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarise(
    rows: Sequence[dict[str, Any]], metrics: Sequence[str] = tuple(METRICS)
) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds per (method, fraction), sorted by method, fraction."""
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((str(r["method"]), float(r["fraction"])), []).append(r)
    out = []
    for (method, fraction), runs in sorted(cells.items()):
        # each seed may draw its own labelled subset (finetune.subset_per_seed): the counts differ a little
        jets = [int(r["jets"]) for r in runs]
        entry: dict[str, Any] = {
            "method": method, "fraction": fraction, "jets": round(float(np.mean(jets))),
            "jets_min": min(jets), "jets_max": max(jets), "seeds": len(runs),
        }  # fmt: skip
        for m in (*metrics, *(v for v in VALIDATION if any(r.get(v) is not None for r in runs))):
            vals = [float(r[m]) for r in runs if r.get(m) is not None and not math.isnan(float(r[m]))]
            mean, std = _spread(vals) if vals else (float("nan"), float("nan"))
            entry[f"{m}_mean"], entry[f"{m}_std"] = mean, std
        out.append(entry)
    return out


def gains(
    rows: Sequence[dict[str, Any]],
    baseline: str = "scratch",
    metric: str = "accuracy",
    correct: dict[tuple[str, float, int], np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every method's gain over `baseline` per fraction, paired by seed.

    The arms of one seed share the labelled subset, data order and (for the pretrained arms) the pretraining
    seed's backbone, so the comparison is paired: d_s = metric(method, s) - metric(baseline, s) over the
    seeds both ran; gain = mean d_s, `se` = std(d_s, ddof=1) / sqrt(n) (the seed-to-seed spread of the
    difference, not a quadrature sum of the two arms' spreads). With `correct` ({(method, fraction, seed):
    per-test-jet correctness}, accuracy only), `bootstrap_se` adds the test-sample uncertainty: the gain
    recomputed on `n_boot` resamplings (with replacement) of the test jets, the same jets for every run."""
    by_key = {(str(r["method"]), float(r["fraction"]), int(r["seed"])): r for r in rows}
    cells: dict[tuple[str, float], list[int]] = {}
    for method, fraction, s in by_key:
        if method != baseline and (baseline, fraction, s) in by_key:
            cells.setdefault((method, fraction), []).append(s)
    out = []
    for (method, fraction), seeds in sorted(cells.items()):
        seeds = sorted(seeds)
        pairs = [(by_key[(method, fraction, s)].get(metric), by_key[(baseline, fraction, s)].get(metric))
                 for s in seeds]  # fmt: skip
        keep = [(s, float(a) - float(b)) for s, (a, b) in zip(seeds, pairs, strict=True)
                if a is not None and b is not None]  # fmt: skip
        if not keep:
            continue
        for s, _ in keep:  # a paired comparison: both arms of a seed trained on the same labelled jets
            a, b = by_key[(method, fraction, s)]["jets"], by_key[(baseline, fraction, s)]["jets"]
            if int(a) != int(b):
                raise ValueError(
                    f"{method!r} and {baseline!r} at fraction {fraction}, seed {s}: {a} vs {b} labelled "
                    "jets; the arms of one seed must share the labelled subset"
                )
        d = np.asarray([x for _, x in keep])
        se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
        entry: dict[str, Any] = {
            "method": method, "baseline": baseline, "fraction": fraction,
            "jets": int(by_key[(method, fraction, keep[0][0])]["jets"]), "seeds": len(d), "metric": metric,
            "gain": float(d.mean()), "se": se, "per_seed": {str(s): x for s, x in keep},
        }  # fmt: skip
        if correct is not None and metric == "accuracy":
            entry["bootstrap_se"] = bootstrap_se(
                [correct[(method, fraction, s)] for s, _ in keep],
                [correct[(baseline, fraction, s)] for s, _ in keep], n_boot, seed,
            )  # fmt: skip
        out.append(entry)
    return out


def bootstrap_se(
    method: Sequence[np.ndarray], baseline: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> float:
    """Standard deviation of the seed-averaged accuracy gain over bootstrap resamplings of the test jets
    (each array: one seed's per-jet correctness, the same jets in the same order for every run)."""
    diff = np.mean([np.asarray(a, np.float64) - np.asarray(b, np.float64)
                    for a, b in zip(method, baseline, strict=True)], axis=0)  # fmt: skip
    n, rng = len(diff), np.random.default_rng(seed)
    means = np.concatenate([diff[rng.integers(0, n, size=(min(100, n_boot - i), n))].mean(1)
                            for i in range(0, n_boot, 100)])  # fmt: skip
    return float(means.std(ddof=1))


def write_efficiency(
    rows: Sequence[dict[str, Any]],
    csv_path: str | Path,
    json_path: str | Path,
    metrics: Sequence[str] = tuple(METRICS),
    extra: dict[str, Any] | None = None,
    correct: dict[tuple[str, float, int], np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """CSV of the summary (method, fraction, jets, seeds, <metric>_mean, <metric>_std...) and a JSON with
    the summary, the paired gains over "scratch" (if present; with a test-jet bootstrap given `correct`),
    every run and `extra` (e.g. provenance)."""
    summary = summarise(rows, metrics)
    columns = ["method", "fraction", "jets", "seeds", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for s in summary:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in s.items() if k in columns})
    write_text_atomic(csv_path, buf.getvalue())
    payload = {
        "summary": summary,
        "gains": {m: gains(rows, metric=m, correct=correct) for m in metrics},
        "runs": list(rows),
        **(extra or {}),
    }
    write_json_atomic(json_path, payload)
    return summary


def plot_efficiency(
    summary: Sequence[dict[str, Any]],
    path: str | Path,
    metrics: Sequence[str] = tuple(METRICS),
    title: str = "",
) -> None:
    """One panel per metric: mean ± std over seeds vs labelled jets (log axis), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    methods = sorted({s["method"] for s in summary})
    for ax, m in zip(axes.flat, metrics, strict=False):
        for method in methods:
            pts = sorted((s["jets"], s[f"{m}_mean"], s[f"{m}_std"]) for s in summary if s["method"] == method)
            x, y, e = (np.asarray(v, dtype=float) for v in zip(*pts, strict=True))
            ax.errorbar(x, y, yerr=e, marker="o", ms=4, capsize=3, label=method, lw=1.2)
        ax.set_xscale("log")
        ax.set_xlabel("labelled training jets")
        ax.set_ylabel(METRICS.get(m, m))
        if m == "rejection50":
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
