"""Sweep-level steps shared by the CLI and the Snakemake scripts: paths, the fit + figures, a whole sweep."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from jetfm.atomic import write_json_atomic, write_text_atomic
from jetfm.paths import scaling_dir
from jetfm.provenance import make_provenance


def sweep_dir(config: dict[str, Any]) -> Path:
    return Path(scaling_dir(config["scaling"]["sweep"]))


def split_files(h5_dir: str | Path, split: str, config: dict[str, Any]) -> list[str]:
    """The preprocessing stage's shards of a split (`{h5_dir}/{split}/{i:04d}.h5`)."""
    from jetfm.paths import shard_paths

    return shard_paths(h5_dir, split, config["preprocess"]["shards_per_split"])


def is_capped(row: dict[str, Any]) -> bool:
    """Whether a cell stopped at the step budget before its passes were done (a runs.csv row)."""
    per_pass = max(1, int(float(row["D"])) // int(float(row["batch_size"])))
    return int(float(row["steps"])) < int(float(row["epochs"])) * per_pass


def fit_sweep(config: dict[str, Any], runs_csv: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """runs.csv -> fit.json (every parameter with its uncertainty) + the report figures in out_dir."""
    from jetfm.scaling.fit import analyse
    from jetfm.scaling.plots import plot_all
    from jetfm.scaling.runs import read_curves, read_runs

    t0 = time.time()
    rows = read_runs(runs_csv)
    curves = [p for p in read_curves(runs_csv) if int(p.get("replica") or 0) == 0]
    fit_cfg = config["scaling"]["fit"]
    fit = analyse(rows, fit_cfg, curves)
    edge = [r["cell"] for r in rows if str(r.get("lr_at_edge")) == "True"]
    if edge:
        fit["notes"].append(f"best learning rate still at the edge of the search (after extension) in {edge}")
    capped = [r["cell"] for r in rows if str(r.get("still_improving")) == "True" and is_capped(r)]
    if capped:
        fit["notes"].append(
            f"validation loss still falling at the step budget (scaling.steps_cap) in {capped}: compute-"
            "limited, their loss overestimates the converged one"
        )
    plot_all(rows, fit, out_dir, curves)
    fit["provenance"] = make_provenance(
        "scaling-fit", config, fit_cfg["seed"], counts={"cells": len(rows)}, wall_time_s=time.time() - t0,
        inputs=[str(runs_csv)],
    )  # fmt: skip
    write_json_atomic(Path(out_dir) / "fit.json", fit)
    write_text_atomic(Path(out_dir) / "scaling_headline.rst", headline_rst(fit, config["scaling"]["sweep"]))
    return fit


def headline_rst(fit: dict[str, Any], sweep: str) -> str:
    """The report front page's scaling line: the law's exponents and E with uncertainties, N_opt at the
    stated budget, the status (and its reasons when it is not ok)."""
    paragraphs = [
        f"**Scaling law** (sweep ``{sweep}``, {fit['grid']['cells']} cells): status **{fit['status']}**."
    ]
    if "parameters" in fit:
        p = fit["parameters"]
        values = [
            f"{k} = {p[k]['value']:.3g}" + (f" ± {p[k]['uncertainty']:.2g}" if "uncertainty" in p[k] else "")
            for k in ("alpha", "beta", "E")
        ]
        paragraphs.append("L(N, D) = E + A/N^alpha + B/D^beta with " + ", ".join(values) + ".")
        at = fit["frontier"]["at_budget"]
        band = f" (68 %: {at['N_opt_p16']:.3g} to {at['N_opt_p84']:.3g})" if "N_opt_p16" in at else ""
        extra = ", extrapolated" if at["extrapolated"] else ""
        paragraphs.append(f"Compute-optimal N at C = {at['C']:.3g} FLOPs: {at['N_opt']:.3g}{band}{extra}.")
    if fit.get("reasons"):
        paragraphs.append("\n".join(f"- {r}" for r in fit["reasons"]))
    return "\n\n".join(paragraphs) + "\n"


def describe(fit: dict[str, Any]) -> str:
    """One line per fitted quantity, for logs and the CLI."""
    if "parameters" not in fit:
        return f"fit {fit.get('status')}: " + "; ".join(fit.get("reasons", []) + fit.get("notes", []))
    lines = []
    for name, p in fit["parameters"].items():
        lines.append(f"{name} = {p['value']:.4g} ± {p.get('uncertainty', float('nan')):.2g}")
    gof = fit["goodness_of_fit"]
    lines.append(f"chi2/ndf = {gof['chi2']:.2f}/{gof['ndf']}")
    fr = fit["frontier"]
    lines.append(f"N_opt ∝ C^{fr['a']['value']:.3f} ± {fr['a'].get('uncertainty', float('nan')):.2g}")
    if fit.get("repetition"):
        r = fit["repetition"]["R_star"]
        lines.append(f"R* = {r['value']:.3g} ± {r.get('uncertainty', float('nan')):.2g}")
    lines.insert(0, f"status: {fit['status']}")
    lines += [f"reason: {u}" for u in fit["reasons"]] + [f"note: {n}" for n in fit["notes"]]
    return "\n".join(lines)


def is_current(result_json: Path, settings: dict[str, Any]) -> bool:
    """Whether a cell's result.json was made with these settings (a changed setting reruns the cell)."""
    if not result_json.is_file():
        return False
    saved = json.loads(result_json.read_text()).get("provenance", {}).get("cell_settings")
    return json.loads(json.dumps(saved)) == json.loads(json.dumps(settings))


def run_sweep(
    config: dict[str, Any], h5_dir: str | Path, out_dir: str | Path, threads: int = 0
) -> dict[str, Any]:
    """The whole sweep in this process (what `snakemake scaling_all` runs as separate jobs): cells whose
    result.json was made with the current settings are kept, missing or changed ones (re)run."""
    from jetfm.scaling.cell import pretrain_size, run_cell
    from jetfm.scaling.grid import (
        cell_settings,
        cells,
        per_size_pretraining,
        pretrain_dir,
        pretrained_checkpoint,
        test_jets,
    )
    from jetfm.scaling.runs import collect
    from jetfm.scaling.subset import write_subset

    section = config["scaling"]
    out = Path(out_dir)
    seed = section["subset_seed"]
    scoring = {}
    for split, jets in (("val", section["val_jets"]), ("test", test_jets(section))):  # the rules' names
        scoring[split] = out / "data" / f"{split}_D{jets}.h5"
        if not scoring[split].exists():
            write_subset(split_files(h5_dir, split, config), jets, scoring[split], seed, split)
    if per_size_pretraining(section):  # each size's backbone first (rule scaling_pretrain)
        files = {split: split_files(h5_dir, split, config) for split in ("train", "val", "test")}
        for size in section["sizes"]:
            if not Path(pretrained_checkpoint(config, size)).is_file():
                pretrain_size(config, size, files, pretrain_dir(config, size), threads)
    results = []
    for cell in cells(section):  # primaries before their seed replicas
        subset = out / "data" / f"train_D{cell.jets}.h5"
        if not subset.exists():
            write_subset(split_files(h5_dir, "train", config), cell.jets, subset, seed)
        result = out / "cells" / cell.id / "result.json"
        if not is_current(result, cell_settings(config, cell.id)):
            print(f"cell {cell.id}: {'settings changed, rerun' if result.exists() else 'run'}", flush=True)
            run_cell(config, cell.id, str(subset), str(scoring["val"]), result.parent, threads,
                     test_file=str(scoring["test"]))  # fmt: skip
        results.append(result)
    collect(results, out / "runs.csv")
    return fit_sweep(config, out / "runs.csv", out)
