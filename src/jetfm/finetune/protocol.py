"""The comparison protocol's bookkeeping: which arms run, where, and which hyperparameters each one gets.

- Arms (`finetune_methods`): scratch; scratch-matched (compute-matched: pretraining + fine-tuning steps);
  every pretraining run label (method x unlabelled size) x mode (full, frozen probe).
- Validation sweep (`sweep_grid`, `choose`): a small grid over lr x weight decay x dropout, each point one
  seed-0 run per (arm, fraction), scored on the validation accuracy of its best-validation weights; every arm
  in `finetune.sweep.methods` gets the same grid (the same tuning budget), scratch-matched reuses scratch's
  choice (a grid of 1700-step runs would cost more than the study). The chosen point is a JSON file that
  `run_finetuning` reads (`read_hparams`).
- Where (`run_set`, `sweep_run_dir`, `choice_path`): under `jetfm.paths.finetune_dir` / `pretrain_dir` of the
  run set = dataset, or dataset-<study> for a study preset (so a study shares the dataset's shards but not its
  results).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from jetfm.atomic import write_json_atomic
from jetfm.finetune.methods import MATCHED, PROBE, SCRATCH, SWEEP_KEYS
from jetfm.paths import finetune_dir, pretrain_dir
from jetfm.pretrain.variants import PretrainVariant, backbone_label

SWEEP_METRIC = "val_accuracy"


def pretrain_labels(config: dict[str, Any], seeds: bool = False) -> list[str]:
    """Pretraining run labels: methods x unlabelled fractions (x seed indices with `seeds`)."""
    section = config.get("pretrain", {})
    fractions = section.get("unlabelled_fractions") or [1.0]
    n_seeds = int(section.get("seeds", 1)) if seeds else 1
    return [
        PretrainVariant(m, float(u), s).label
        for m in section.get("methods", [])
        for u in fractions
        for s in range(n_seeds)
    ]


def finetune_methods(config: dict[str, Any]) -> list[str]:
    """Every fine-tuning arm of the config, scratch first."""
    section = config.get("finetune", {})
    arms = [SCRATCH] + ([MATCHED] if section.get("compute_matched") else [])
    for label in pretrain_labels(config):
        arms += [label + (PROBE if mode == "frozen" else "") for mode in section.get("modes", ["full"])]
    return arms


def sweep_grid(config: dict[str, Any]) -> list[dict[str, float]]:
    """The validation sweep's points: the product of `finetune.sweep.{lr, weight_decay, dropout}` lists (an
    absent or empty list leaves that knob at its config value); [] when the sweep is off."""
    sweep = config.get("finetune", {}).get("sweep", {})
    if not sweep.get("enabled", False):
        return []
    axes = [(k, sweep.get(k) or []) for k in SWEEP_KEYS]
    axes = [(k, v) for k, v in axes if v]
    names = [k for k, _ in axes]
    return [dict(zip(names, point, strict=True)) for point in itertools.product(*(v for _, v in axes))]


def swept(config: dict[str, Any], method: str) -> str | None:
    """The arm whose sweep choice `method` uses (itself, scratch for scratch-matched), or None."""
    if not sweep_grid(config):
        return None
    target = SCRATCH if method == MATCHED else method
    methods = config["finetune"]["sweep"].get("methods") or finetune_methods(config)
    return target if target in methods and not target.endswith(PROBE) else None


def sweep_run_dir(results_name: str, method: str, fraction: str | float, point: str | int) -> str:
    frac = fraction if isinstance(fraction, str) else f"{fraction:g}"
    return f"{finetune_dir(results_name)}/sweep/{method}_{frac}_p{point}"


def choice_path(results_name: str, method: str, fraction: str | float) -> str:
    frac = fraction if isinstance(fraction, str) else f"{fraction:g}"
    return f"{finetune_dir(results_name)}/sweep/{method}_{frac}.json"


def backbone_checkpoints(
    config: dict[str, Any], results_name: str, method: str, seed_index: int
) -> list[str]:
    """The pretraining checkpoint a fine-tuning arm's seed starts from ([] for the scratch arms): seed i
    uses pretraining seed i mod `pretrain.seeds`."""
    if method in (SCRATCH, MATCHED):
        return []
    label = backbone_label(method, seed_index, int(config.get("pretrain", {}).get("seeds", 1)))
    return [f"{pretrain_dir(results_name, label)}/checkpoint.pt"]


def hparams_inputs(
    config: dict[str, Any], results_name: str, method: str, fraction: str | float
) -> list[str]:
    """The sweep choice an arm reads (`run_finetuning`), as a rule input; [] without a sweep."""
    target = swept(config, method)
    return [choice_path(results_name, target, fraction)] if target else []


def choose(metrics_files: list[str], grid: list[dict[str, float]], out: str | Path) -> dict[str, Any]:
    """The sweep point with the best validation accuracy of its selected weights (ties: the first point);
    writes {"chosen", "point", "metric", "candidates"} to `out`."""
    if len(metrics_files) != len(grid):
        raise ValueError(f"sweep choice {out}: {len(metrics_files)} runs for a grid of {len(grid)} points")
    candidates = []
    for i, (path, point) in enumerate(zip(metrics_files, grid, strict=True)):
        m = json.loads(Path(path).read_text())
        value = ((m.get("selected") or {}).get("validation") or {}).get(SWEEP_METRIC)
        if value is None:
            raise ValueError(
                f"{path}: no selected.validation.{SWEEP_METRIC}; the sweep needs finetune.select_best: true"
            )
        candidates.append({"point": i, "hparams": point, SWEEP_METRIC: float(value)})
    best = max(candidates, key=lambda c: (c[SWEEP_METRIC], -c["point"]))
    record = {"chosen": best["hparams"], "point": best["point"], "metric": SWEEP_METRIC,
              "candidates": candidates}  # fmt: skip
    write_json_atomic(out, record)
    return record
