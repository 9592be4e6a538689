"""The report figure of the image representation: the average jet image of every class, per channel.

The images are the CNN's own (same `ImageSpec`, built by the same function on the same shards), so the
figure shows exactly what the tagger sees: the prongs of W/Z/H/top against the single core of QCD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from jetfm.atomic import write_json_atomic
from jetfm.figures import save_figure
from jetfm.models.jetimage import ImageSpec, jet_images
from jetfm.provenance import make_provenance
from jetfm.train.data import H5JetStream, make_loader


def average_images(
    paths: list[str], spec: ImageSpec, max_jets: int = 0, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(K, C, size, size) mean image per class, (K,) jets per class, class names; nominal jets in file
    order, at most `max_jets` (0 = all)."""
    stream = H5JetStream(paths, batch_size, shuffle=False, drop_last=False)
    classes = stream.meta.classes
    sums = torch.zeros(len(classes), len(spec.channels), spec.size, spec.size, dtype=torch.float64)
    counts = torch.zeros(len(classes), dtype=torch.int64)
    seen = 0
    with torch.no_grad():
        for batch in make_loader(stream):
            if max_jets:
                batch = {k: v[: max_jets - seen] for k, v in batch.items()}
            images = jet_images(batch["part_features"], batch["part_vectors"], batch["part_mask"], spec)
            sums.index_add_(0, batch["label"], images.double())
            counts += torch.bincount(batch["label"], minlength=len(classes))
            seen += len(batch["label"])
            if max_jets and seen >= max_jets:
                break
    means = sums / counts.clamp_min(1).view(-1, 1, 1, 1)
    return means.float().numpy(), counts.numpy(), classes


def plot_average_images(
    means: np.ndarray, counts: np.ndarray, classes: tuple[str, ...], spec: ImageSpec, path: str | Path
) -> None:
    """One row per class with jets, one column per channel; log colour scale shared by each column."""
    rows = [k for k in range(len(classes)) if counts[k] > 0]
    if not rows:
        raise ValueError("no jets to average: every class is empty")
    n_ch = len(spec.channels)
    fig, axes = plt.subplots(
        len(rows), n_ch, figsize=(2.1 * n_ch + 0.8, 1.55 * len(rows) + 0.7), squeeze=False
    )
    e = spec.extent
    for c in range(n_ch):
        column = means[rows, c]
        positive = column[column > 0]
        vmax = float(positive.max()) if positive.size else 1.0
        norm = matplotlib.colors.LogNorm(vmin=vmax * 1e-4, vmax=vmax)
        for r, k in enumerate(rows):
            ax = axes[r, c]
            im = ax.imshow(np.clip(means[k, c], vmax * 1e-4, None), origin="lower", extent=(-e, e, -e, e),
                           cmap="viridis", norm=norm)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(spec.channels[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{classes[k]}\n({counts[k]})", fontsize=7)
        bar = fig.colorbar(im, ax=axes[:, c].tolist(), shrink=0.5, aspect=30)
        bar.ax.tick_params(labelsize=6)
    steps = [
        s for s, on in (("centre " + spec.centre, True), ("rotate", spec.rotate), ("flip", spec.flip)) if on
    ]
    unit = "fraction of jet pT" if spec.normalise else "GeV"
    fig.suptitle(f"average jet image per class ({', '.join(steps)}; {unit}; Δη' across, Δφ' up)", fontsize=8)
    save_figure(fig, path, dpi=100)


def write_average_images(
    paths: list[str],
    spec: ImageSpec,
    out_png: str | Path,
    max_jets: int = 0,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The figure plus a JSON sidecar (jets per class, image settings, provenance) next to it."""
    means, counts, classes = average_images(paths, spec, max_jets)
    plot_average_images(means, counts, classes, spec, out_png)
    summary = {
        "jets_per_class": {c: int(n) for c, n in zip(classes, counts, strict=True)},
        "image": spec.__dict__,
        "provenance": make_provenance(
            "images", config or {}, None, counts={"jets": int(counts.sum())}, inputs={"shards": paths}
        ),
    }
    write_json_atomic(Path(out_png).with_suffix(".json"), summary)
    return summary
