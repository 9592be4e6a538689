"""The fine-tuning study's outputs: the data-efficiency table and figure from the runs' metrics.json, and the
headline (`pretrain_headline.rst`) that the report's front page shows (test metrics per model, and per
labelled fraction the gain of the pretrained method chosen *on validation* over scratch, paired by seed with
its standard error and a bootstrap over test jets, with the sizes in jets).

Choosing the headline method by its test accuracy would select on the test set: the winner's test number is
then biased upwards (the maximum of noisy estimates). So the method with the best mean validation accuracy
of its selected (best-validation) weights is the headline; its test gain is reported as measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from jetfm.atomic import write_text_atomic
from jetfm.finetune.efficiency import METRICS, efficiency_row, plot_efficiency, write_efficiency
from jetfm.finetune.schedule import PREDICTIONS


def _load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def heldout_accuracy(probs: np.ndarray, labels: np.ndarray, classes: list[str], heldout: list[str]) -> float:
    """Test accuracy on the jets of the `heldout` classes only (classes absent from pretraining)."""
    unknown = sorted(set(heldout) - set(classes))
    if unknown:
        raise ValueError(f"held-out classes {unknown} are not among the run's classes {classes}")
    sel = np.isin(labels, [classes.index(c) for c in heldout])
    return float((probs[sel].argmax(1) == labels[sel]).mean()) if sel.any() else float("nan")


def efficiency_from_runs(
    metrics_files: list[str],
    csv_path: str,
    json_path: str,
    figure_path: str,
    extra: dict[str, Any] | None = None,
    heldout: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows from each fine-tuning run's metrics.json -> table (CSV, JSON) and figure; with `heldout`
    classes (the held-out-class study), also the test accuracy on those classes' jets (`heldout_accuracy`,
    from each run's per-jet predictions)."""
    rows = []
    correct: dict[tuple[str, float, int], np.ndarray] | None = {}
    for path in metrics_files:
        m = _load(path)
        if "method" not in m or "labelled_fraction" not in m:
            raise ValueError(f"{path} is not a fine-tuning metrics.json (no method / labelled_fraction)")
        rows.append(efficiency_row(m, m["method"], m["labelled_fraction"], m["labelled_jets"], m["seed"]))
        predictions = Path(path).parent / PREDICTIONS
        if predictions.is_file():
            with np.load(predictions) as z:
                probs, labels = z["probs"].astype(np.float32), z["labels"].astype(np.int64)
            if correct is not None:
                correct[(m["method"], float(m["labelled_fraction"]), int(m["seed"]))] = (
                    probs.argmax(1) == labels
                )
            if heldout:
                rows[-1]["heldout_accuracy"] = heldout_accuracy(probs, labels, list(m["classes"]), heldout)
        else:
            correct = None  # a run without per-jet predictions: no bootstrap for anyone
            if heldout:
                raise ValueError(f"{path}: no {PREDICTIONS} next to it; the held-out-class metric needs it")
    metrics = (*METRICS, "heldout_accuracy") if heldout else tuple(METRICS)
    summary = write_efficiency(rows, csv_path, json_path, metrics, extra=extra, correct=correct)
    n_test = sorted({r["n_test"] for r in rows})
    title = f"fine-tuning vs scratch: mean ± std over seeds, {n_test[0]} test jets"
    plot_efficiency(summary, figure_path, metrics, title=title)
    return summary


def _pm(mean: float, std: float, scale: float = 1.0, digits: int = 3) -> str:
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def headline_rst(
    efficiency_json: str | Path,
    train_metrics: list[str] | None = None,
    pretrain_summaries: list[str] | None = None,
) -> str:
    """reStructuredText of the run's headline numbers, each with its sizes."""
    eff = _load(efficiency_json)
    summary = eff["summary"]
    lines = ["Headline numbers of this run", "^^^^^^^^^^^^^^^^^^^^^^^^^^^^", ""]
    for path in train_metrics or []:
        m = _load(path)
        counts = m.get("provenance", {}).get("counts", {})
        lines.append(
            f"- supervised **{m['model']}** ({m['parameters']:,} parameters, {m['steps']} steps on "
            f"{counts.get('train_rows', '?')} labelled jets): test accuracy {m['accuracy']:.3f}, "
            f"macro AUC {m['macro_auc'] or float('nan'):.3f} on {m['n']} test jets"
        )
    for path in pretrain_summaries or []:
        s = _load(path)
        counts = s.get("provenance", {}).get("counts", {})
        val = ", ".join(f"{k} {v:.3g}" for k, v in s.items() if k.startswith("val_") and isinstance(v, float))
        lines.append(
            f"- pretraining **{s['objective']['name']}**: {s['steps']} steps, {s['jets_seen']} jets seen "
            f"from "
            f"{counts.get('train_rows', '?')} unlabelled training jets/views; final {val}"
        )
    lines += chosen_gain_lines(summary, eff["gains"]["accuracy"])
    n_test = sorted({r["n_test"] for r in eff["runs"]})
    lines += [
        "",
        f"Test split: {n_test[0] if n_test else '?'} jets. Full table: efficiency.csv (Summary).",
        "",
    ]
    return "\n".join(lines)


def choose_on_validation(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The non-scratch method with the best mean validation accuracy (None without validation numbers)."""
    scored = [
        c for c in cells if c.get("val_accuracy_mean") is not None and not c["method"].startswith("scratch")
    ]
    return max(scored, key=lambda c: c["val_accuracy_mean"]) if scored else None


def chosen_gain_lines(summary: list[dict[str, Any]], gains: list[dict[str, Any]]) -> list[str]:
    """Per labelled fraction: the method chosen on validation, its test accuracy vs scratch, paired gain."""
    lines = []
    for frac in sorted({s["fraction"] for s in summary}):
        cells = [s for s in summary if s["fraction"] == frac]
        scratch = next((s for s in cells if s["method"] == "scratch"), None)
        best = choose_on_validation(cells)
        gain = next(
            (g for g in gains if g["fraction"] == frac and best and g["method"] == best["method"]), None
        )
        if scratch is None or best is None or gain is None:
            lines.append(f"- labelled fraction {frac:g}: no pretrained arm with validation numbers and a "
                         "paired scratch run; nothing chosen")  # fmt: skip
            continue
        boot = f", ± {gain['bootstrap_se'] * 100:.1f} (test jets)" if "bootstrap_se" in gain else ""
        lines.append(
            f"- labelled fraction {frac:g} ({best['jets']} labelled jets, {gain['seeds']} paired seeds): "
            f"**{best['method']}** (chosen on validation accuracy {best['val_accuracy_mean']:.3f}) test "
            f"accuracy {_pm(best['accuracy_mean'], best['accuracy_std'])} vs scratch "
            f"{_pm(scratch['accuracy_mean'], scratch['accuracy_std'])}: **gain {gain['gain'] * 100:+.1f} ± "
            f"{gain['se'] * 100:.1f} points** (SE over seeds{boot})"
        )
    return lines


def protocol_table(eff: dict[str, Any]) -> str:
    """Markdown table: every arm at every fraction, test accuracy mean ± std and the paired gain ± SE."""
    gains = {(g["method"], g["fraction"]): g for g in eff["gains"]["accuracy"]}
    rows = ["| fraction | labelled jets | method | seeds | val acc | test acc | gain vs scratch (points) |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in eff["summary"]:
        g = gains.get((s["method"], s["fraction"]))
        gain = "—" if g is None else f"{g['gain'] * 100:+.1f} ± {g['se'] * 100:.1f}" + (
            f" (boot. ± {g['bootstrap_se'] * 100:.1f})" if "bootstrap_se" in g else "")  # fmt: skip
        val = "—" if s.get("val_accuracy_mean") is None else f"{s['val_accuracy_mean']:.3f}"
        test = _pm(s["accuracy_mean"], s["accuracy_std"])
        rows.append(
            f"| {s['fraction']:g} | {s['jets']} | {s['method']} | {s['seeds']} | {val} | {test} | {gain} |"
        )
    return "\n".join(rows) + "\n"


def write_headline(
    out: str | Path, efficiency_json: str, train_metrics: list[str], pretrain: list[str]
) -> str:
    text = headline_rst(efficiency_json, train_metrics, pretrain)
    write_text_atomic(out, text)
    return text
