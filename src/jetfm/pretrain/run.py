"""The entry of the pretrain stage: one pretraining method from the workflow config (`jetfm pretrain` and the
rules `pretrain` and `tokenizer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jetfm.pretrain.contrastive import check_disjoint_events
from jetfm.pretrain.objectives import TOKENIZER, make_objective
from jetfm.train.config import TrainConfig, from_workflow
from jetfm.train.resume import ResumeMode


def pretrain_config(
    config: dict[str, Any], method: str, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """TrainConfig of a pretraining run: `train:` + `pretrain.train` (+ the tokenizer's own overrides), with
    the backbone size of `pretrain.size` (the one fine-tuning and the scratch baseline use too)."""
    section = config.get("pretrain", {})
    values = {**section.get("train", {}), "size": dict(section.get("size", {}))}
    if method == TOKENIZER:
        values.update(section.get("tokenizer", {}).get("train", {}))
    return from_workflow(config, "part", {**values, **(overrides or {})})


def run_pretraining(
    config: dict[str, Any],
    method: str,
    files: dict[str, list[str]],
    out_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    tokenizer: str | Path | None = None,
    resume: ResumeMode = False,
) -> dict[str, Any]:
    """Pretrain `method` on the training split (validated against val/test: no shared event) into out_dir."""
    from jetfm.train.loop import train

    counts = check_disjoint_events(files["train"], {s: files[s] for s in ("val", "test") if files.get(s)})
    cfg = pretrain_config(config, method, overrides)
    objective = make_objective(config, method, tokenizer)
    result = train(cfg, files["train"], files["val"], None, out_dir, resume=resume, workflow_config=config,
                   objective=objective)  # fmt: skip
    summary = getattr(objective, "last_val", {})
    print(f"{method}: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()) + f"; events {counts}")
    return {**result, "events": counts, "val": summary}
