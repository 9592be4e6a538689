"""Validation figure of the simulation: soft-drop mass and jet pT per class, read back from the ROOT shards.

Physics check at a glance: the soft-drop mass peaks near m_t = 173 GeV (Tbqq), m_W = 80 GeV (Wqq),
m_Z = 91 GeV (Zqq) and m_H = 125 GeV (Hbb, Hcc, Hgg, H4q), shifted low by the detector response and by
particles outside the jet; QCD falls steeply from low masses. Tbl and Hqql have a neutrino, so their masses
sit lower and wider.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import uproot

from jetfm import CLASSES
from jetfm.atomic import write_json_atomic
from jetfm.figures import save_figure
from jetfm.jetclass import LABEL_BRANCHES, TREE_NAME

MASS_BINS = np.linspace(0.0, 250.0, 51)


def read_jets(paths: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, np.ndarray]]:
    """Per class: jet pT and soft-drop mass of every jet in the given shards (class from the labels)."""
    out: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: {"jet_pt": [], "jet_sdmass": []})
    for path in paths:
        with uproot.open(path) as f:
            arr = f[TREE_NAME].arrays(["jet_pt", "jet_sdmass", *LABEL_BRANCHES], library="np")
        labels = np.stack([arr[b].astype(np.float64) for b in LABEL_BRANCHES], axis=1)
        which = labels.argmax(axis=1) if len(labels) else np.zeros(0, int)
        for k, cls in enumerate(CLASSES):
            sel = which == k
            if sel.any():
                out[cls]["jet_pt"].append(arr["jet_pt"][sel])
                out[cls]["jet_sdmass"].append(arr["jet_sdmass"][sel])
    return {c: {k: np.concatenate(v) for k, v in d.items()} for c, d in out.items()}


def _mode(values: np.ndarray) -> float:
    """Most populated 5-GeV bin centre in 40-250 GeV (the peak, away from the QCD low-mass rise)."""
    v = values[(values > 40) & (values < 250)]
    if v.size == 0:
        return float("nan")
    h, edges = np.histogram(v, bins=np.arange(40.0, 255.0, 10.0))
    return float(0.5 * (edges[h.argmax()] + edges[h.argmax() + 1]))


def plot_validation(paths: Sequence[str | os.PathLike[str]], figure: str | os.PathLike[str],
                    summary: str | os.PathLike[str]) -> dict[str, dict[str, float]]:  # fmt: skip
    """Write the figure (PNG) and a JSON summary (jets, median pT, soft-drop mass peak/median per class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jets = read_jets(paths)
    classes = [c for c in CLASSES if c in jets]
    fig, (ax_m, ax_pt) = plt.subplots(1, 2, figsize=(12, 4.5))
    pt_bins = np.linspace(450.0, 1050.0, 25)
    stats: dict[str, dict[str, float]] = {}
    for cls in classes:
        m, pt = jets[cls]["jet_sdmass"], jets[cls]["jet_pt"]
        ax_m.hist(m, bins=MASS_BINS, histtype="step", density=True, label=f"{cls} ({len(m)})")
        ax_pt.hist(pt, bins=pt_bins, histtype="step", density=True, label=cls)
        stats[cls] = {"jets": len(m), "sdmass_median": float(np.median(m)), "sdmass_peak": _mode(m),
                      "pt_median": float(np.median(pt))}  # fmt: skip
    for mass, name in ((80.4, "W"), (91.2, "Z"), (125.0, "H"), (172.5, "t")):
        ax_m.axvline(mass, color="grey", lw=0.8, ls=":")
        ax_m.text(mass, 0.99, name, transform=ax_m.get_xaxis_transform(), ha="center", va="top", fontsize=8,
                  color="grey")  # fmt: skip
    ax_m.set(
        xlabel="soft-drop mass [GeV]", ylabel="normalised", title="jet soft-drop mass (beta=0, z_cut=0.1)"
    )
    ax_pt.set(xlabel="jet pT [GeV]", ylabel="normalised", title="jet pT (anti-kT R=0.8)")
    ax_m.legend(fontsize=7, ncol=2, loc="upper right", bbox_to_anchor=(1.0, 0.93))
    ax_pt.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, figure, dpi=120)
    write_json_atomic(summary, stats)
    return stats
