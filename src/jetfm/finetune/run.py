"""The entry of the finetune stage: one fine-tuning run (a method, labelled fraction and seed) from the
workflow config (`jetfm finetune` and rule `finetune`); the methods' names are in `methods`.

Methods: `scratch` (the architecture re-initialised), `scratch-matched` (scratch with the compute of
pretraining + fine-tuning: `pretrain.train.max_steps` + the fine-tuning steps), `<pretraining method>` (full
fine-tuning from its backbone) and `<method>-probe` (frozen backbone, linear probe). Every arm of one seed
index sees the same labelled subset (paired design); the seed index also picks the subset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jetfm.finetune.methods import MATCHED, SCRATCH, SWEEP_KEYS, parse_method
from jetfm.train.config import TrainConfig, from_workflow
from jetfm.train.resume import ResumeMode


def finetune_config(
    config: dict[str, Any], seed_index: int, overrides: dict[str, Any] | None = None, method: str = SCRATCH
) -> TrainConfig:
    """TrainConfig of one fine-tuning run: `train:` + `finetune.train`, the backbone size of `pretrain.size`,
    seed = config seed + seed_index (init and data order); `scratch-matched` gets the pretraining steps
    added to its max_steps (and its warmup kept)."""
    values = {
        **config.get("finetune", {}).get("train", {}),
        "size": dict(config.get("pretrain", {}).get("size", {})),
        "seed": int(config.get("seed", 0)) + int(seed_index),
    }
    cfg = from_workflow(config, "part", {**values, **(overrides or {})})
    if method == MATCHED:
        pre = from_workflow(config, "part", dict(config.get("pretrain", {}).get("train", {})))
        cfg = cfg.replace(max_steps=cfg.max_steps + pre.max_steps)
    return cfg


def read_hparams(path: str | Path | None) -> dict[str, Any]:
    """The validation-sweep choice of a (method, fraction) (`protocol.choose`): lr, weight_decay, dropout."""
    if not path:
        return {}
    chosen = json.loads(Path(path).read_text()).get("chosen", {})
    unknown = sorted(set(chosen) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(
            f"{path}: field 'chosen' has unknown key(s) {unknown}; expected some of {SWEEP_KEYS}"
        )
    return chosen


def sweep_choice(config: dict[str, Any], method: str, fraction: float) -> str | None:
    """The validation-sweep choice file this arm must use (finetune.sweep enabled), else None."""
    from jetfm.finetune.protocol import choice_path, swept
    from jetfm.paths import run_set

    target = swept(config, method)
    if target is None:
        return None
    path = choice_path(run_set(config), target, fraction)
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"finetune.sweep is enabled for {method!r} but its choice {path} does not exist; run the sweep "
            "(snakemake finetune_sweep_all) or pass --hparams"
        )
    return path


def run_finetuning(
    config: dict[str, Any],
    method: str,
    fraction: float,
    seed_index: int,
    files: dict[str, list[str]],
    out_dir: str,
    backbone: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: ResumeMode = False,
    hparams: str | Path | dict[str, Any] | None = None,
    adapter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One fine-tuning run (CLI and Snakemake entry); `backbone` is None for the scratch arms.

    `hparams`: a sweep choice (file or dict: lr, weight_decay, dropout) applied on top of the config;
    `adapter`: what the input adapter computed and filled (recorded in metrics.json)."""
    from jetfm.finetune.objective import FineTune
    from jetfm.train.loop import train

    pretrained, mode = parse_method(method)
    if (pretrained is None) != (backbone is None):
        raise ValueError(f"finetune method {method!r} and backbone {backbone!r} disagree (scratch has none)")
    section = config.get("finetune", {})
    if hparams is None:
        hparams = sweep_choice(config, method, fraction)
    chosen = dict(hparams) if isinstance(hparams, dict) else read_hparams(hparams)
    train_over = {k: chosen[k] for k in ("lr", "weight_decay") if k in chosen}
    cfg = finetune_config(config, seed_index, {**train_over, **(overrides or {})}, method)
    objective = FineTune(
        method, fraction, backbone, mode, float(section.get("backbone_lr_scale", 1.0)), cfg.label_smoothing,
        size_from_backbone=backbone is not None, layer_decay=float(section.get("layer_decay", 1.0)),
        freeze_steps=int(section.get("freeze_steps", 0)) if mode == "full" else 0,
        subset=seed_index if section.get("subset_per_seed", True) else 0,
        select_best=bool(section.get("select_best", True)), dropout=chosen.get("dropout"),
    )  # fmt: skip
    objective.adapter = adapter
    return train(cfg, files["train"], files["val"], files["test"], out_dir, resume=resume,
                 workflow_config=config, objective=objective)  # fmt: skip
