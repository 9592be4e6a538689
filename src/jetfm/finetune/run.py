"""The entry of the finetune stage: one fine-tuning run (a method, labelled fraction and seed) from the
workflow config (`jetfm finetune` and rule `finetune`), and the names of the methods."""

from __future__ import annotations

from typing import Any

from jetfm.train.config import TrainConfig, from_workflow
from jetfm.train.resume import ResumeMode

SCRATCH = "scratch"
PROBE = "-probe"


def method_label(pretrained: str | None, mode: str) -> str:
    """Run name of a fine-tuning method: 'scratch', '<pretraining method>' or '<method>-probe' (frozen)."""
    if pretrained is None:
        return SCRATCH
    return pretrained + (PROBE if mode == "frozen" else "")


def parse_method(label: str) -> tuple[str | None, str]:
    """Inverse of `method_label`: (pretraining method or None for scratch, mode)."""
    if label == SCRATCH:
        return None, "full"
    if label.endswith(PROBE):
        return label[: -len(PROBE)], "frozen"
    return label, "full"


def finetune_config(
    config: dict[str, Any], seed_index: int, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """TrainConfig of one fine-tuning run: `train:` + `finetune.train`, the backbone size of `pretrain.size`,
    seed = config seed + seed_index (init and data order)."""
    values = {
        **config.get("finetune", {}).get("train", {}),
        "size": dict(config.get("pretrain", {}).get("size", {})),
        "seed": int(config.get("seed", 0)) + int(seed_index),
    }
    return from_workflow(config, "part", {**values, **(overrides or {})})


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
) -> dict[str, Any]:
    """One fine-tuning run (CLI and Snakemake entry); `backbone` is None for the scratch baseline."""
    from jetfm.finetune.objective import FineTune
    from jetfm.train.loop import train

    pretrained, mode = parse_method(method)
    if (pretrained is None) != (backbone is None):
        raise ValueError(f"finetune method {method!r} and backbone {backbone!r} disagree (scratch has none)")
    cfg = finetune_config(config, seed_index, overrides)
    lr_scale = float(config.get("finetune", {}).get("backbone_lr_scale", 1.0))
    objective = FineTune(method, fraction, backbone, mode, lr_scale, cfg.label_smoothing)
    return train(cfg, files["train"], files["val"], files["test"], out_dir, resume=resume,
                 workflow_config=config, objective=objective)  # fmt: skip
