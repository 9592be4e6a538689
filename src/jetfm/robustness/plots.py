"""Figures of the robustness stage: reliability diagrams per model, drop and output distance per shift."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jetfm.figures import save_figure

CURVES = {"single": ("raw", "C0"), "single_ts": ("temperature-scaled", "C1"), "ensemble": ("ensemble", "C2")}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reliability(result: dict[str, Any], out: str | Path) -> None:
    """Accuracy against confidence per sample: raw, temperature-scaled and (if any) the ensemble."""
    plt = _pyplot()
    samples = result["samples"]
    cols = min(4, len(samples))
    rows = -(-len(samples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax, sample in zip(axes.flat, samples, strict=False):
        ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1)
        for key, curve in result["reliability"][sample].items():
            name, color = CURVES[key]
            conf, acc = np.asarray(curve["confidence"], float), np.asarray(curve["accuracy"], float)
            ok = np.isfinite(conf)
            ece = _ece_label(result, key, sample)
            ax.plot(conf[ok], acc[ok], "o-", ms=3, color=color, label=f"{name} (ECE {ece})")
        ax.set_title(sample, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(samples) :]:
        ax.axis("off")
    t = result["temperature"]["temperature"]
    fig.suptitle(f"{result['model']}: reliability (T = {t:.3g} fitted on validation)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)


def _ece_label(result: dict[str, Any], key: str, sample: str) -> str:
    if key == "ensemble":
        value = result["ensemble"][sample]["ece"]
    else:
        value = result["single"][sample]["ece_ts" if key == "single_ts" else "ece"]
    return f"{value:.3f}"


def plot_robustness(evaluations: Sequence[dict[str, Any]], out: str | Path) -> None:
    """Per shift and model: accuracy drop (bars; ensemble members' mean +- std as error bars) and the mean
    total-variation distance of the outputs from the nominal version (the replica shift: the noise floor)."""
    plt = _pyplot()
    shifts = [
        s for s in evaluations[0]["samples"] if s in evaluations[0]["single"] and s not in ("test", "nominal")
    ]
    x = np.arange(len(shifts))
    width = 0.8 / max(1, len(evaluations))
    fig, (ax_drop, ax_tv) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, ev in enumerate(evaluations):
        pos = x - 0.4 + width * (i + 0.5)
        drop = [ev["single"][s].get("accuracy_drop", np.nan) for s in shifts]
        tv = [ev["single"][s].get("output_tv", np.nan) for s in shifts]
        ax_drop.bar(pos, drop, width, label=ev["model"], color=f"C{i}")
        ax_tv.bar(pos, tv, width, label=ev["model"], color=f"C{i}")
        if "ensemble" in ev:
            ens = ev["ensemble"]
            n = ens[shifts[0]]["members"]
            ax_drop.errorbar(
                pos, [ens[s]["accuracy_drop_seed_mean"] for s in shifts],
                yerr=[ens[s]["accuracy_drop_seed_std"] for s in shifts], fmt="k.", capsize=3,
                label=f"{ev['model']}: {n} seeds, mean +- std",
            )  # fmt: skip
    ax_drop.axhline(0, color="0.3", lw=0.8)
    ax_drop.set_ylabel("accuracy drop (nominal - shifted, same events)")
    ax_tv.set_ylabel("mean TV distance of outputs from nominal")
    for ax in (ax_drop, ax_tv):
        ax.set_xticks(x, shifts, rotation=20)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
