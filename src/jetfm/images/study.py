"""Transfer learning vs random initialisation of the CNN, over labelled fractions x seeds.

Methods: `scratch` (the registry's random init; the baseline name of `jetfm.finetune.efficiency`), `source` (a
jetfm CNN trained on another task: the same shards restricted to `images.transfer.source_classes`, or a
checkpoint the user names), `pretrained` (a local torchvision-format file, `images.transfer.pretrained_file`;
none given -> skipped, and the log, the JSON and the figure say so). Every run goes through the one training
loop with the `ImageFineTune` objective on the labelled jets of `jetfm.finetune.labelled` (event-id hash,
nested in the fraction, the same for every method and seed: the spread over seeds is that of the
initialisation and the batch order, not of the sample), and the result is the pretraining stage's
data-efficiency table and figure (`jetfm.finetune.efficiency`).

Each training run (the source task, then every method x fraction x seed) is started by the one launcher
(`jetfm.train.launch`) on the ranks of `train:` < `images.transfer.train_overrides` (`gpus`, `nodes`;
`jetfm.train.stage_layout`): in this process for one rank, else torchrun or srun, one launch per run. The
study itself (the source subset, the table, the figure) runs once, in the rule's process. A run stopped by
SIGTERM resumes on the retry (`resume="auto"`); finished runs are reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetfm.shards import write_row_subset
from jetfm.train.data import read_meta

METHODS = ("scratch", "source", "pretrained")


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


def finished_run(run: Path, train_config: dict[str, Any], objective: dict[str, Any]) -> dict[str, Any] | None:
    """metrics.json of a run already done with exactly this training config and objective (the study then
    continues where it stopped, and independent invocations can share the runs), else None."""
    path = run / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    prov = metrics.get("provenance", {})
    same = json.loads(json.dumps([train_config, objective])) == [
        prov.get("train_config"),
        prov.get("objective"),
    ]
    return metrics if same else None


def train_run(
    config: dict[str, Any], overrides: dict[str, Any], files: dict[str, Any], out_dir: str,
    objective: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """One CNN run of the study in this process or rank (the launcher's target; JSON-able arguments): the
    source task (`objective` None: supervised on `files["train"]`, no test split) or an `ImageFineTune` run
    (`objective`: its method, fraction, weights and label smoothing)."""
    from jetfm.images.transfer import ImageFineTune
    from jetfm.train.config import from_workflow
    from jetfm.train.loop import train

    cfg = from_workflow(config, "cnn", overrides)
    train(cfg, files["train"], files["val"], files["test"], out_dir, resume="auto",
          workflow_config=config, objective=ImageFineTune(**objective) if objective else None)  # fmt: skip


def launch_run(
    config: dict[str, Any], overrides: dict[str, Any], files: dict[str, Any], out_dir: Path,
    objective: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """`train_run` on the study's ranks (`images.transfer.train_overrides.gpus`, ...)."""
    from jetfm.train import launch
    from jetfm.train.stage_layout import layout_config

    kwargs = {"config": config, "overrides": overrides, "files": files, "out_dir": str(out_dir),
              "objective": objective}  # fmt: skip
    launch.run("jetfm.images.study:train_run", kwargs, layout_config(config, "images"), "train", out_dir)


def run_transfer_study(
    config: dict[str, Any],
    files: dict[str, list[str]],
    out_dir: str | Path,
    source_checkpoint: str | None = None,
    threads: int = 0,
) -> list[dict[str, Any]]:
    """All runs of `images.transfer`; writes efficiency.csv, efficiency.json and efficiency.png in out_dir.

    `source_checkpoint`: a jetfm CNN checkpoint of the source task; None trains it here on
    `source_classes` (out_dir/source). `threads`: torch threads of each rank. Returns the summary (mean ± std
    per method x fraction).
    """
    from jetfm.finetune.efficiency import efficiency_row, plot_efficiency, write_efficiency
    from jetfm.images.transfer import ImageFineTune
    from jetfm.provenance import make_provenance
    from jetfm.train.config import from_workflow

    t0 = time.time()
    out = Path(out_dir)
    tcfg = config["images"]["transfer"]
    overrides = {"size": dict(tcfg["size"]), **tcfg["train_overrides"], "progress": False, "threads": threads}
    skipped: dict[str, str] = {}
    if source_checkpoint is None:
        source_files = class_subset(files["train"], out / "source" / "h5", list(tcfg["source_classes"]))
        print(f"source task: CNN on classes {tcfg['source_classes']} ({source_files})")
        launch_run(config, overrides, {"train": source_files, "val": files["val"], "test": None},
                   out / "source")  # fmt: skip
        source_checkpoint = str(out / "source" / "checkpoint.pt")
    weights: dict[str, str | None] = {"scratch": None, "source": source_checkpoint}
    if tcfg["pretrained_file"]:
        weights["pretrained"] = tcfg["pretrained_file"]
    else:
        skipped["pretrained"] = "no images.transfer.pretrained_file given (nothing is downloaded)"
        print(f"pretrained: skipped, {skipped['pretrained']}")
    rows = []
    for fraction in tcfg["fractions"]:
        for method, path in weights.items():
            for seed in tcfg["seeds"]:
                run_overrides = {**overrides, "seed": int(seed)}
                cfg = from_workflow(config, "cnn", run_overrides)
                spec = {"method": method, "fraction": float(fraction), "weights": path,
                        "label_smoothing": cfg.label_smoothing}  # fmt: skip
                describe = ImageFineTune(**spec).describe()
                run = out / "runs" / f"{method}_{fraction}_{seed}"
                m = finished_run(run, cfg.to_dict(), describe)
                if m is None:
                    launch_run(config, run_overrides, files, run, spec)
                    m = finished_run(run, cfg.to_dict(), describe)
                    if m is None:
                        raise RuntimeError(f"run {run} ended without its metrics.json")
                rows.append(efficiency_row(m, method, float(fraction), m["labelled_jets"], int(seed)))
                print(f"{method} fraction {fraction} ({m['labelled_jets']} jets) seed {seed}: "
                      f"accuracy {m['accuracy']:.4f} ({time.time() - t0:.0f} s)")  # fmt: skip
    provenance = make_provenance(
        "images_transfer", config, config.get("seed"), counts={"runs": len(rows)},
        wall_time_s=time.time() - t0, source_checkpoint=source_checkpoint,
    )  # fmt: skip
    summary = write_efficiency(rows, out / "efficiency.csv", out / "efficiency.json",
                               extra={"skipped": skipped, "provenance": provenance})  # fmt: skip
    note = "; ".join(f"{k} skipped: {v}" for k, v in skipped.items())
    title = "CNN: transfer vs random initialisation (scratch)" + (f"\n{note}" if note else "")
    plot_efficiency(summary, out / "efficiency.png", title=title)
    return summary
