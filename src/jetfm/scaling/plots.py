"""Report figures of a sweep: loss vs N per D, loss vs D per N, iso-FLOP curves with the compute-optimal
frontier, fit residuals, the repetition gain, the cells' learning curves and the corner plot of the bootstrap
samples. Curves of the law are drawn only where the fit succeeded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jetfm.figures import save_figure
from jetfm.scaling.fit import NAMES, law
from jetfm.scaling.frontier import flops_per_size, k_of
from jetfm.scaling.repetition import effective_data

FIGURES = ("loss_vs_n", "loss_vs_d", "isoflop", "residuals", "repetition", "learning_curves", "corner")


def _arrays(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = ("N", "D", "epochs", "val_loss", "val_loss_sem", "flops")
    return {k: np.array([float(r[k]) for r in rows]) for k in keys}


def _params(fit: dict[str, Any]) -> np.ndarray | None:
    if "parameters" not in fit:
        return None
    return np.array([fit["parameters"][k]["value"] for k in NAMES])


def _title(fit: dict[str, Any]) -> str:
    if fit.get("status") != "ok":
        return "no fit: " + fit.get("status", "?")
    p = fit["parameters"]

    def fmt(k: str) -> str:
        return f"{k}={p[k]['value']:.3g}" + (f"±{p[k]['uncertainty']:.2g}" if "uncertainty" in p[k] else "")

    return ", ".join(fmt(k) for k in ("E", "alpha", "beta"))


def _loss_vs(x_key: str, group_key: str, rows: list[dict[str, Any]], fit: dict[str, Any], path: Path) -> None:
    a = _arrays(rows)
    base = a["epochs"] == a["epochs"].min()
    params = _params(fit)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    groups = np.unique(a[group_key][base])
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(groups)))
    for g, color in zip(groups, colors, strict=True):
        sel = base & (a[group_key] == g)
        order = np.argsort(a[x_key][sel])
        x, y, e = (a[k][sel][order] for k in (x_key, "val_loss", "val_loss_sem"))
        ax.errorbar(x, y, e, fmt="o", color=color, ms=4, label=f"{group_key} = {g:.3g}")
        if params is not None:
            grid = np.logspace(np.log10(x.min()) - 0.2, np.log10(x.max()) + 0.2, 60)
            n, d = (grid, np.full_like(grid, g)) if x_key == "N" else (np.full_like(grid, g), grid)
            ax.plot(grid, law(params, n, d), color=color, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N" if x_key == "N" else "training jets D")
    ax.set_ylabel("validation cross-entropy")
    ax.set_title(_title(fit), fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path, bbox_inches="tight")


def plot_isoflop(rows: list[dict[str, Any]], fit: dict[str, Any], path: Path) -> None:
    """Cells coloured by compute; fitted iso-FLOP curves L(N, C / (k N)); the frontier through the minima."""
    a = _arrays(rows)
    params = _params(fit)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sc = ax.scatter(a["N"], a["val_loss"], c=np.log10(a["flops"]), cmap="plasma", s=22, zorder=3)
    fig.colorbar(sc, ax=ax, label="log10 training FLOPs (measured)")
    if params is not None:
        sizes, ks = flops_per_size(rows)
        budgets = np.logspace(np.log10(a["flops"].min()), np.log10(a["flops"].max()), 5)
        n_grid = np.logspace(np.log10(a["N"].min()) - 0.5, np.log10(a["N"].max()) + 0.5, 100)
        for c in budgets:
            ax.plot(n_grid, law(params, n_grid, c / (k_of(n_grid, sizes, ks) * n_grid)), color="0.6", lw=0.8)
        pts = fit["frontier"]["points"]
        inside = [p for p in pts if not p["extrapolated"]]
        ax.plot([p["N_opt"] for p in inside], [p["L_opt"] for p in inside], "k-", lw=1.2,
                label=f"frontier N_opt ∝ C^{fit['frontier']['a']['value']:.2f}")  # fmt: skip
        ax.plot([p["N_opt"] for p in pts], [p["L_opt"] for p in pts], "k--", lw=0.8,
                label="frontier, extrapolated beyond the grid (dashed)")  # fmt: skip
        ax.set_xlim(n_grid.min(), n_grid.max())
        ax.set_ylim(a["val_loss"].min() * 0.9, a["val_loss"].max() * 1.1)
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation cross-entropy")
    ax.set_title("iso-FLOP curves (grey) from the fit", fontsize=9)
    save_figure(fig, path, bbox_inches="tight")


def plot_residuals(rows: list[dict[str, Any]], fit: dict[str, Any], path: Path) -> None:
    a = _arrays(rows)
    params = _params(fit)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    if params is not None:
        base = a["epochs"] == a["epochs"].min()
        pred = law(params, a["N"][base], a["D"][base])
        sigma = np.maximum(a["val_loss_sem"][base], 1e-12)
        pull = (a["val_loss"][base] - pred) / sigma
        ax.scatter(pred, pull, c=np.log10(a["N"][base]), cmap="viridis", s=22)
        ax.axhline(0, color="k", lw=0.8)
        gof = fit["goodness_of_fit"]
        ndf = gof["chi2_per_ndf"]
        ax.set_title(
            f"chi2/ndf = {gof['chi2']:.1f}/{gof['ndf']}" + (f" = {ndf:.2f}" if ndf else ""), fontsize=9
        )
        ax.set_xlabel("fitted loss")
        ax.set_ylabel("(measured - fit) / standard error")
    else:
        ax.text(
            0.5, 0.5, "no fit: " + str(fit.get("status")), ha="center", va="center", transform=ax.transAxes
        )
    save_figure(fig, path, bbox_inches="tight")


def plot_repetition(rows: list[dict[str, Any]], fit: dict[str, Any], path: Path) -> None:
    """Loss vs passes over the same U jets, per (N, U), with the fitted effective-data curve."""
    a = _arrays(rows)
    params = _params(fit)
    rep = fit.get("repetition") if params is not None else None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    keys = sorted({(n, d) for n, d in zip(a["N"], a["D"], strict=True)})
    multi = [key for key in keys if ((a["N"] == key[0]) & (a["D"] == key[1])).sum() > 1]
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(multi))))
    for (n, d), color in zip(multi, colors, strict=False):
        sel = (a["N"] == n) & (a["D"] == d)
        order = np.argsort(a["epochs"][sel])
        ep = a["epochs"][sel][order]
        ax.errorbar(ep, a["val_loss"][sel][order], a["val_loss_sem"][sel][order], fmt="o", color=color, ms=4,
                    label=f"N={n:.3g}, U={d:.3g}")  # fmt: skip
        if params is not None and rep is not None:
            grid = np.linspace(ep.min(), ep.max(), 40)
            d_eff = effective_data(
                np.full_like(grid, d), grid - a["epochs"].min() + 1, rep["R_star"]["value"]
            )
            ax.plot(grid, law(params, np.full_like(grid, n), d_eff), color=color, lw=1)
    if not multi:
        ax.text(0.5, 0.5, "no repeated cells in this grid", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=7)
    title = "repetition: D' = U(1 + R*(1 - exp(-(E-1)/R*)))"
    if rep is not None:
        title += f", R* = {rep['R_star']['value']:.3g}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("epochs over the subset")
    ax.set_ylabel("validation cross-entropy")
    save_figure(fig, path, bbox_inches="tight")


def plot_learning_curves(curves: list[dict[str, Any]], path: Path) -> None:
    """Validation loss against jets seen, one panel per model size, one line per data size."""
    sizes = sorted({float(p["N"]) for p in curves})
    fig, axes = plt.subplots(1, max(1, len(sizes)), figsize=(3.2 * max(1, len(sizes)), 3.2), squeeze=False)
    if not curves:
        axes[0, 0].text(0.5, 0.5, "no learning curves in this sweep", ha="center", va="center")
    data_sizes = sorted({float(p["D"]) for p in curves})
    colors = dict(zip(data_sizes, plt.cm.viridis(np.linspace(0, 0.9, len(data_sizes))), strict=True))
    for ax, n in zip(axes[0], sizes, strict=False):
        for cell in sorted({p["cell"] for p in curves if float(p["N"]) == n}):
            pts = sorted((p for p in curves if p["cell"] == cell), key=lambda p: int(p["step"]))
            d = float(pts[0]["D"])
            ax.plot([float(p["jets_seen"]) for p in pts], [float(p["val_loss"]) for p in pts], "o-", ms=2,
                    lw=1, color=colors[d], label=f"D = {d:.0f}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(f"N = {n:.3g}", fontsize=9)
        ax.set_xlabel("jets seen")
    axes[0, 0].set_ylabel("validation cross-entropy")
    if curves:
        axes[0, -1].legend(fontsize=6)
    save_figure(fig, path, bbox_inches="tight")


def plot_corner(fit: dict[str, Any], path: Path) -> None:
    """Pairwise bootstrap samples of (E, A, alpha, B, beta): the correlations behind the uncertainties."""
    samples = np.array(fit.get("bootstrap", {}).get("samples", []), float).reshape(-1, len(NAMES))
    k = len(NAMES)
    fig, axes = plt.subplots(k, k, figsize=(8, 8))
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i or not len(samples):
                ax.axis("off")
                continue
            x = np.log10(samples[:, j]) if NAMES[j] in ("A", "B") else samples[:, j]
            if i == j:
                ax.hist(x, bins=30, color="tab:blue")
            else:
                y = np.log10(samples[:, i]) if NAMES[i] in ("A", "B") else samples[:, i]
                ax.plot(x, y, ".", ms=1.5, alpha=0.4, color="tab:blue")
            if i == k - 1:
                ax.set_xlabel(f"log10 {NAMES[j]}" if NAMES[j] in ("A", "B") else NAMES[j], fontsize=8)
            if j == 0 and i > 0:
                ax.set_ylabel(f"log10 {NAMES[i]}" if NAMES[i] in ("A", "B") else NAMES[i], fontsize=8)
            ax.tick_params(labelsize=6)
    if not len(samples):
        axes[0, 0].text(0.5, 0.5, "no bootstrap samples", ha="center", va="center", transform=fig.transFigure)
    fig.suptitle(_title(fit), fontsize=9)
    save_figure(fig, path, bbox_inches="tight")


def plot_all(
    rows: list[dict[str, Any]],
    fit: dict[str, Any],
    out_dir: str | Path,
    curves: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    out = Path(out_dir)
    paths = {name: out / f"{name}.png" for name in FIGURES}
    _loss_vs("N", "D", rows, fit, paths["loss_vs_n"])
    _loss_vs("D", "N", rows, fit, paths["loss_vs_d"])
    plot_isoflop(rows, fit, paths["isoflop"])
    plot_residuals(rows, fit, paths["residuals"])
    plot_repetition(rows, fit, paths["repetition"])
    plot_learning_curves(curves or [], paths["learning_curves"])
    plot_corner(fit, paths["corner"])
    return paths
