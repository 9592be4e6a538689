"""View-to-view against event-to-event spread of jet observables in the re-simulation views files.

For K views of one hard event, the standard deviation over the views measures what re-simulation changes;
the standard deviation of the per-event view means measures how different events are. Their ratio is the
figure of merit of the views: near 0 the views are copies, near 1 they are unrelated events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import uproot

from jetfm import CLASSES
from jetfm.atomic import write_json_atomic
from jetfm.figures import save_figure
from jetfm.jetclass import LABEL_BRANCHES, TREE_NAME

OBSERVABLES = {"jet_sdmass": "soft-drop mass [GeV]", "jet_nparticles": "constituents"}


def view_spread(event_id: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Mean within-event std over views, and std over events of the per-event view means."""
    order = np.argsort(event_id, kind="stable")
    ids, vals = event_id[order], values[order].astype(np.float64)
    _, starts, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(counts) == 0:
        return {"events": 0, "view_std": float("nan"), "event_std": float("nan"), "ratio": float("nan")}
    sums = np.add.reduceat(vals, starts)
    means = sums / counts
    sq = np.add.reduceat((vals - np.repeat(means, counts)) ** 2, starts)
    view_std = np.sqrt(sq / np.maximum(counts - 1, 1))
    event_std = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
    mean_view_std = float(np.mean(view_std))
    return {
        "events": len(counts),
        "view_std": mean_view_std,
        "event_std": event_std,
        "ratio": mean_view_std / event_std if event_std and np.isfinite(event_std) else float("nan"),
    }


def read_views(paths: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Per class: event ids, observables and the provenance counts of every views file."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        with uproot.open(path) as f:
            arrays = f[TREE_NAME].arrays(["event_id", *OBSERVABLES, *LABEL_BRANCHES], library="np")
            prov = json.loads(str(f["provenance"])) if "provenance" in f else {}
        if len(arrays["event_id"]) == 0:
            continue
        labels = np.stack([arrays[b].astype(np.float64) for b in LABEL_BRANCHES], axis=1)
        cls = CLASSES[int(np.argmax(labels[0]))]
        slot = out.setdefault(cls, {"event_id": [], **{o: [] for o in OBSERVABLES}, "counts": []})
        slot["event_id"].append(arrays["event_id"])
        for o in OBSERVABLES:
            slot[o].append(arrays[o])
        slot["counts"].append(prov.get("counts", {}))
    return out


def plot_view_spread(paths: Sequence[str | Path], figure: str | Path, summary: str | Path) -> dict[str, Any]:
    """Write the spread figure and a JSON summary (per class and observable, plus lost-view counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_views(paths)
    result: dict[str, Any] = {}
    for cls, slot in data.items():
        ids = np.concatenate(slot["event_id"])
        result[cls] = {o: view_spread(ids, np.concatenate(slot[o])) for o in OBSERVABLES}
        totals: dict[str, Any] = {}
        for c in slot["counts"]:
            for k, v in c.items():
                if k == "views":
                    totals[k] = v
                elif isinstance(v, list):  # per-view counts, summed view by view
                    prev = totals.get(k, [0] * len(v))
                    totals[k] = [a + b for a, b in zip(prev, v, strict=True)]
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    totals[k] = totals.get(k, 0) + v
        result[cls]["counts"] = totals

    classes = [c for c in CLASSES if c in result]
    fig, axes = plt.subplots(1, len(OBSERVABLES), figsize=(6 * len(OBSERVABLES), 4.2))
    x = np.arange(len(classes))
    for ax, (obs, label) in zip(np.atleast_1d(axes), OBSERVABLES.items(), strict=True):
        view = [result[c][obs]["view_std"] for c in classes]
        event = [result[c][obs]["event_std"] for c in classes]
        ax.bar(x - 0.2, event, 0.4, label="between events (std of view means)", color="0.7")
        ax.bar(x + 0.2, view, 0.4, label="between views of one event (mean std)", color="C0")
        ax.set_xticks(x, classes, rotation=45)
        ax.set_ylabel(f"spread of {label}")
        ax.set_title(obs)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, figure, dpi=120)
    write_json_atomic(summary, result)
    return result
