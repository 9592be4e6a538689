"""Transfer learning vs random initialisation of the CNN, over labelled fractions x seeds.

Initialisations (`INITS`): `random` (the registry's init), `source` (a jetfm CNN trained on another task: the
same shards restricted to `images.transfer.source_classes`, or a checkpoint the user names), `pretrained`
(a local torchvision-format file, `images.transfer.pretrained_file`; none given -> the arm is skipped and
the table says so). Every run goes through the one training loop (`jetfm.train.loop.train`), the
pre-trained ones with the `FromPretrained` objective.

The labelled subset of a fraction f is the training jets whose event-id hash (salted) is below f, so the
subsets are nested (f1 < f2 -> subset(f1) in subset(f2)) and the same for every seed and initialisation:
the spread over seeds is that of the initialisation of the head (and of everything for `random`) and of the
batch order, not of the sample.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetfm.atomic import atomic_path, write_text_atomic
from jetfm.splits import hash_unit_interval
from jetfm.train.data import read_meta

INITS = ("random", "source", "pretrained")
LABELLED_SALT = 0x1A8E11ED  # event-hash salt of the labelled subsets (independent of the split hash)
RESULT_COLUMNS = ("init", "fraction", "seed", "labelled_jets", "accuracy", "macro_auc", "macro_f1", "steps")


def write_row_subset(
    src_paths: list[str], out_dir: str | Path, keep: Callable[[h5py.File], np.ndarray], what: str
) -> list[str]:
    """Copy each shard's rows where `keep(file)` is True to `out_dir/<i>.h5` (same datasets, chunks and
    attrs; the provenance attr gains `subset` = `what`); raises if nothing at all is kept."""
    out, total = [], 0
    for i, src in enumerate(src_paths):
        dst = Path(out_dir) / f"{i:04d}.h5"
        dst.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(src, "r") as f:
            rows = np.flatnonzero(keep(f))
            if rows.size == 0:
                continue
            total += rows.size
            with atomic_path(dst) as tmp, h5py.File(tmp, "w") as g:
                for name, ds in f.items():
                    data = ds[:][rows]
                    chunks = (min(ds.chunks[0] if ds.chunks else 256, len(rows)), *data.shape[1:])
                    g.create_dataset(name, data=data, chunks=chunks)
                for k, v in f.attrs.items():
                    g.attrs[k] = v
                prov = json.loads(f.attrs.get("provenance", "{}"))
                g.attrs["provenance"] = json.dumps(
                    {**prov, "subset": what, "subset_of": src, "rows": int(rows.size)}
                )
        out.append(str(dst))
    if total == 0:
        raise ValueError(f"the subset {what!r} of {src_paths} is empty: no training jet selected")
    return out


def labelled_subset(src_paths: list[str], out_dir: str | Path, fraction: float) -> list[str]:
    """Nominal training jets with hash(event_id) < fraction (nested in the fraction, seed-independent)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"labelled fraction must be in (0, 1], got {fraction}")
    return write_row_subset(
        src_paths, out_dir,
        lambda f: (hash_unit_interval(f["event_id"][:], LABELLED_SALT) < fraction) & (f["view"][:] == -1),
        f"labelled fraction {fraction}",
    )  # fmt: skip


def class_subset(src_paths: list[str], out_dir: str | Path, classes: list[str]) -> list[str]:
    """Jets of the named classes only (the source task of transfer learning)."""

    def keep(f: h5py.File) -> np.ndarray:
        names = list(read_meta([f.filename]).classes)  # JSON string or string array, as the loader reads it
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise ValueError(
                f"images.transfer.source_classes: {unknown} not among the shard's classes {names}"
            )
        return np.isin(f["label"][:], [names.index(c) for c in classes])

    return write_row_subset(src_paths, out_dir, keep, f"classes {classes}")


def result_row(
    init: str, fraction: float, seed: int, metrics: dict[str, Any], labelled: int
) -> dict[str, Any]:
    return {
        "init": init, "fraction": fraction, "seed": seed, "labelled_jets": labelled,
        "accuracy": metrics["accuracy"], "macro_auc": metrics["macro_auc"], "macro_f1": metrics["macro_f1"],
        "steps": metrics["steps"],
    }  # fmt: skip


def write_transfer_comparison(
    rows: list[dict[str, Any]], out_csv: str | Path, out_png: str | Path, skipped: dict[str, str]
) -> list[dict[str, Any]]:
    """Per-run table (out_csv), mean ± std over seeds per (init, fraction) (out_csv with `_summary`), figure.

    Placeholder of the pretraining stage's labelled-efficiency table/figure: the lead swaps in that shared
    code (jetfm.train.efficiency) at merge; the inputs (one row per init x fraction x seed) stay the same.
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out_csv, buf.getvalue())
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["init"], float(r["fraction"])), []).append(r)
    summary = []
    for (init, fraction), rs in sorted(groups.items()):
        row: dict[str, Any] = {"init": init, "fraction": fraction, "seeds": len(rs),
                               "labelled_jets": rs[0]["labelled_jets"]}  # fmt: skip
        for m in ("accuracy", "macro_auc", "macro_f1"):
            vals = np.array([float(r[m]) for r in rs if r[m] not in (None, "")])
            row[f"{m}_mean"] = f"{vals.mean():.4f}" if vals.size else ""
            row[f"{m}_std"] = f"{vals.std(ddof=1):.4f}" if vals.size > 1 else ""
        summary.append(row)
    for init, why in skipped.items():
        summary.append({"init": init, "fraction": "", "seeds": 0, "labelled_jets": "", "skipped": why})
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in summary for k in r))
    w = csv.DictWriter(buf, fieldnames=fields, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(summary)
    summary_path = Path(out_csv).with_name(Path(out_csv).stem + "_summary.csv")
    write_text_atomic(summary_path, buf.getvalue())
    plot_transfer(summary, out_png, skipped)
    return summary


def plot_transfer(summary: list[dict[str, Any]], path: str | Path, skipped: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jetfm.figures import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for init in INITS:
        pts = [r for r in summary if r["init"] == init and r.get("accuracy_mean")]
        if not pts:
            continue
        x = [int(r["labelled_jets"]) for r in pts]
        y = [float(r["accuracy_mean"]) for r in pts]
        e = [float(r["accuracy_std"] or 0) for r in pts]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=f"{init} ({pts[0]['seeds']} seeds)")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training jets")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    note = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    ax.set_title("CNN: transfer vs random initialisation" + (f"\n({note})" if note else ""), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def run_transfer_study(
    config: dict[str, Any],
    files: dict[str, list[str]],
    out_dir: str | Path,
    source_checkpoint: str | None = None,
    threads: int = 0,
) -> list[dict[str, Any]]:
    """All runs of `images.transfer` on the dataset's shards; writes transfer.csv, _summary.csv, .png.

    `source_checkpoint`: a jetfm CNN checkpoint of the source task; None trains it here on
    `source_classes` (out_dir/source).
    """
    from jetfm.images.transfer import FromPretrained
    from jetfm.train.config import from_workflow
    from jetfm.train.loop import train

    t0 = time.time()
    out = Path(out_dir)
    tcfg = config["images"]["transfer"]
    overrides = {"size": dict(tcfg["size"]), **tcfg["train_overrides"], "progress": False, "threads": threads}
    skipped: dict[str, str] = {}
    if source_checkpoint is None:
        source_files = class_subset(files["train"], out / "source" / "h5", list(tcfg["source_classes"]))
        print(f"source task: CNN on classes {tcfg['source_classes']} ({source_files})")
        cfg = from_workflow(config, "cnn", overrides)
        train(cfg, source_files, files["val"], None, out / "source", workflow_config=config)
        source_checkpoint = str(out / "source" / "checkpoint.pt")
    weights = {"random": None, "source": source_checkpoint}
    if tcfg["pretrained_file"]:
        weights["pretrained"] = tcfg["pretrained_file"]
    else:
        skipped["pretrained"] = "no images.transfer.pretrained_file given (nothing is downloaded)"
        print(f"pretrained: skipped, {skipped['pretrained']}")
    rows = []
    for fraction in tcfg["fractions"]:
        subset = labelled_subset(files["train"], out / "labelled" / f"{fraction}", float(fraction))
        labelled = 0
        for p in subset:
            with h5py.File(p, "r") as f:
                labelled += int((f["view"][:] == -1).sum())
        for init, path in weights.items():
            for seed in tcfg["seeds"]:
                run = out / "runs" / f"{init}_{fraction}_{seed}"
                cfg = from_workflow(config, "cnn", {**overrides, "seed": int(seed)})
                objective = None if path is None else FromPretrained(path, cfg.label_smoothing)
                result = train(cfg, subset, files["val"], files["test"], run, workflow_config=config,
                               objective=objective)  # fmt: skip
                rows.append(result_row(init, float(fraction), int(seed), result["metrics"], labelled))
                print(f"{init} fraction {fraction} ({labelled} jets) seed {seed}: "
                      f"accuracy {result['metrics']['accuracy']:.4f} ({time.time() - t0:.0f} s)")  # fmt: skip
    write_transfer_comparison(rows, out / "transfer.csv", out / "transfer.png", skipped)
    return rows
