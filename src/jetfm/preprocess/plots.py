"""Report figure: distributions of a few ParT inputs per class, read back from the written shards.

Plotting what was *written* (not what was computed) checks the whole chain; the footer lists counts and
any skipped input files, so a skipped file is visible in the report, not only in a log.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from jetfm import CLASSES
from jetfm.figures import save_figure
from jetfm.preprocess.sample import sample_rows

MAX_JETS_PER_CLASS = 20_000
# Jets read for the figure, spread over all shards (sample.py): ~17.5 KB each, so ~0.5 GB at any size.
SAMPLE_JETS = 30_000
# (title, source, column name or None, x label)
PANELS: tuple[tuple[str, str, str | None, str], ...] = (
    ("particle log pT (standardised)", "part", "part_pt_log", "(log pT − 1.7) × 0.7"),
    ("particle ΔR to jet axis (standardised)", "part", "part_deltaR", "(ΔR − 0.2) × 4"),
    ("tanh(d0) of charged particles", "part", "part_d0", "tanh(d0 / mm)"),
    ("particles per jet", "mask", None, "N particles (after truncation)"),
    ("soft-drop mass", "jet", "jet_sdmass", "m_SD [GeV]"),
    ("τ21", "jet", "jet_tau21", "τ2 / τ1"),
)


def _load(shards: list[str]) -> dict[str, np.ndarray]:
    """A bounded sample (SAMPLE_JETS over all shards) of nominal jets (view == -1; all if there are none)."""
    with h5py.File(shards[0], "r") as f:
        names = {"part": list(f.attrs["feature_names"]), "jet": list(f.attrs["jet_feature_names"])}
    keys = ("label", "view", "part_features", "part_mask", "jet_features")
    data = sample_rows(shards, keys, SAMPLE_JETS, nominal_only=False)
    rows = np.flatnonzero(data["view"] == -1) if np.any(data["view"] == -1) else slice(None)
    out = {k: data[key][rows] for k, key in (("label", "label"), ("part", "part_features"),
                                              ("mask", "part_mask"), ("jet", "jet_features"))}  # fmt: skip
    out["names"] = names  # type: ignore[assignment]
    return out


def plot_features(shards: list[str], summary_path: str, out_png: str) -> None:
    """Six per-class histograms (normalised) and a footer with counts and skipped files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _load(shards)
    summary = json.loads(Path(summary_path).read_text())
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    labels = data["label"].astype(np.int64) if len(data["label"]) else np.zeros(0, np.int64)
    present = [c for c in range(len(CLASSES)) if np.any(labels == c)]
    cmap = plt.get_cmap("tab10")
    for ax, (title, src, col, xlabel) in zip(axes.flat, PANELS, strict=True):
        for c in present:
            rows = np.flatnonzero(labels == c)[:MAX_JETS_PER_CLASS]
            if src == "mask":
                values = data["mask"][rows].sum(axis=1)
            elif src == "part":
                j = data["names"]["part"].index(col)
                values = data["part"][rows, :, j][data["mask"][rows]]
                if col == "part_d0":  # neutral particles carry d0 = 0 exactly: show charged ones
                    values = values[values != 0]
            else:
                values = data["jet"][rows, data["names"]["jet"].index(col)]
            if len(values):
                ax.hist(values, bins=40, histtype="step", density=True, color=cmap(c % 10), label=CLASSES[c])
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("normalised")
    axes.flat[0].legend(ncol=2, fontsize=8)
    counts = summary["counts"]
    skipped = summary.get("skipped_files", [])
    footer = (
        f"{counts['jets_in']} jets in, {counts['jets_out']} out; splits {counts['per_split']}; "
        f"{counts.get('particles_truncated', 0)} particles truncated "
        f"in {counts.get('jets_truncated', 0)} jets. "
        + (
            f"Skipped {len(skipped)} file(s): " + "; ".join(Path(s["file"]).name for s in skipped)
            if skipped
            else "No input file skipped."
        )
    )
    fig.text(0.01, 0.005, footer, fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_figure(fig, out_png, dpi=110)
