"""Report figures of a training run: loss curves, ROC (QCD rejection vs signal efficiency), confusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jetfm.figures import save_figure
from jetfm.train.metrics import roc_curve


def _save(fig: Any, path: str | Path) -> None:
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_loss(history: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    steps = [int(r["step"]) for r in history]
    ax.plot(steps, [float(r["train_loss"]) for r in history], label="train (batch)", lw=1)
    val = [(int(r["step"]), float(r["val_loss"])) for r in history if r.get("val_loss") not in (None, "")]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation", ms=3)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def plot_roc(probs: np.ndarray, y: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> None:
    """QCD rejection vs signal efficiency for each X vs QCD (discriminant p_X / (p_X + p_QCD))."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    bkg = classes.index("QCD") if "QCD" in classes else None
    for c, name in enumerate(classes):
        if bkg is None or c == bkg or not (y == c).any() or not (y == bkg).any():
            continue
        sel = (y == c) | (y == bkg)
        s = probs[sel, c] / np.clip(probs[sel, c] + probs[sel, bkg], 1e-12, None)
        fpr, tpr, _ = roc_curve(y[sel] == c, s)
        ok = fpr > 0
        ax.plot(tpr[ok], 1.0 / fpr[ok], label=name, lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("QCD rejection (1 / QCD efficiency)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def plot_confusion(cm: list[list[int]], classes: list[str], path: str | Path, title: str = "") -> None:
    m = np.asarray(cm, dtype=np.float64)
    norm = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=5,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, label="fraction of true class")
    ax.set_title(title)
    _save(fig, path)
