"""The fine-tuning study's outputs: the data-efficiency table and figure from the runs' metrics.json, and the
headline (`pretrain_headline.rst`) that the report's front page shows (test metrics per model, the gain of
the best pretrained model over scratch at the smallest labelled fraction, with the sizes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jetfm.atomic import write_text_atomic
from jetfm.finetune.efficiency import efficiency_row, plot_efficiency, write_efficiency


def _load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def efficiency_from_runs(
    metrics_files: list[str],
    csv_path: str,
    json_path: str,
    figure_path: str,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows from each fine-tuning run's metrics.json -> table (CSV, JSON) and figure."""
    rows = []
    for path in metrics_files:
        m = _load(path)
        if "method" not in m or "labelled_fraction" not in m:
            raise ValueError(f"{path} is not a fine-tuning metrics.json (no method / labelled_fraction)")
        rows.append(efficiency_row(m, m["method"], m["labelled_fraction"], m["labelled_jets"], m["seed"]))
    summary = write_efficiency(rows, csv_path, json_path, extra=extra)
    n_test = sorted({r["n_test"] for r in rows})
    title = f"fine-tuning vs scratch: mean ± std over seeds, {n_test[0]} test jets"
    plot_efficiency(summary, figure_path, title=title)
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
    fractions = sorted({s["fraction"] for s in summary})
    for frac in (fractions[0], fractions[-1]) if fractions else ():
        cells = [s for s in summary if s["fraction"] == frac]
        scratch = next((s for s in cells if s["method"] == "scratch"), None)
        others = [s for s in cells if s["method"] != "scratch"]
        if scratch is None or not others:
            continue
        best = max(others, key=lambda s: s["accuracy_mean"])
        gain = best["accuracy_mean"] - scratch["accuracy_mean"]
        spread = (best["accuracy_std"] ** 2 + scratch["accuracy_std"] ** 2) ** 0.5
        which = "smallest" if frac == fractions[0] else "largest"
        lines.append(
            f"- {which} labelled fraction {frac:g} ({best['jets']} labelled jets, {best['seeds']} seeds): "
            f"best pretrained **{best['method']}** test accuracy "
            f"{_pm(best['accuracy_mean'], best['accuracy_std'])} vs scratch "
            f"{_pm(scratch['accuracy_mean'], scratch['accuracy_std'])}: **gain {gain * 100:+.1f} ± "
            f"{spread * 100:.1f} points**; macro AUC {best['macro_auc_mean']:.3f} vs "
            f"{scratch['macro_auc_mean']:.3f}"
        )
    n_test = sorted({r["n_test"] for r in eff["runs"]})
    lines += [
        "",
        f"Test split: {n_test[0] if n_test else '?'} jets. Full table: efficiency.csv (Summary).",
        "",
    ]
    return "\n".join(lines)


def write_headline(
    out: str | Path, efficiency_json: str, train_metrics: list[str], pretrain: list[str]
) -> str:
    text = headline_rst(efficiency_json, train_metrics, pretrain)
    write_text_atomic(out, text)
    return text
