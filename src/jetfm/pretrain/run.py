"""The entry of the pretrain stage: one pretraining run from the workflow config (`jetfm pretrain` and the
rules `pretrain` and `tokenizer`).

The run's label may carry a pretraining seed and an unlabelled-set size (`pretrain/variants.py`); the training
shards are then restricted (and with `pretrain.classes`, to those classes) into `<out>/data/`, removed when
the run finishes. RS3L runs get the jet-kinematics baseline's positive top-1 next to the model's in
summary.json (`kinematic_baseline.py`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from jetfm.atomic import write_json_atomic
from jetfm.pretrain.contrastive import check_disjoint_events
from jetfm.pretrain.objectives import TOKENIZER, make_objective
from jetfm.pretrain.variants import parse_variant, restricted_files
from jetfm.train.config import TrainConfig, from_workflow
from jetfm.train.data import read_meta
from jetfm.train.resume import ResumeMode


def pretrain_config(
    config: dict[str, Any], method: str, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """TrainConfig of a pretraining run: `train:` + `pretrain.train` (+ the tokenizer's own overrides), with
    the backbone size of `pretrain.size` (the one fine-tuning and the scratch baseline use too); a run label
    with a seed index (`mpm-s1`) shifts the seed."""
    variant = parse_variant(method)
    section = config.get("pretrain", {})
    values = {**section.get("train", {}), "size": dict(section.get("size", {}))}
    if variant.method == TOKENIZER:
        values.update(section.get("tokenizer", {}).get("train", {}))
    cfg = from_workflow(config, "part", {**values, **(overrides or {})})
    return cfg.replace(seed=variant.seed(cfg.seed)) if variant.seed_index else cfg


def class_indices(config: dict[str, Any], files: list[str]) -> list[int] | None:
    """`pretrain.classes` as label indices of the shards (None: every class)."""
    wanted = config.get("pretrain", {}).get("classes") or []
    if not wanted:
        return None
    names = list(read_meta(files[:1]).classes)
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise ValueError(f"pretrain.classes: {unknown} not among the shards' classes {names} ({files[0]})")
    return [names.index(c) for c in wanted]


def run_pretraining(
    config: dict[str, Any],
    method: str,
    files: dict[str, list[str]],
    out_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    tokenizer: str | Path | None = None,
    resume: ResumeMode = False,
) -> dict[str, Any]:
    """Pretrain `method` (a run label, `variants.py`) on the training split (validated against val/test: no
    shared event) into out_dir."""
    from jetfm.train.loop import train

    variant = parse_variant(method)
    counts = check_disjoint_events(files["train"], {s: files[s] for s in ("val", "test") if files.get(s)})
    cfg = pretrain_config(config, method, overrides)
    if variant.method == "mpm_tok" and not tokenizer:  # a variant label: the run set's tokenizer run
        from jetfm.paths import pretrain_dir, run_set

        tokenizer = f"{pretrain_dir(run_set(config), TOKENIZER)}/checkpoint.pt"
    objective = make_objective(config, variant.method, tokenizer)
    data_dir = Path(out_dir) / "data"
    train_files, kept = restricted_files(
        files["train"], data_dir, variant.unlabelled, class_indices(config, files["train"])
    )
    counts.update(kept)
    result = train(cfg, train_files, files["val"], None, out_dir, resume=resume, workflow_config=config,
                   objective=objective)  # fmt: skip
    shutil.rmtree(data_dir, ignore_errors=True)
    summary = dict(getattr(objective, "last_val", {}))
    extra: dict[str, Any] = {"variant": {"label": method, "method": variant.method,
                                         "unlabelled_fraction": variant.unlabelled,
                                         "seed_index": variant.seed_index}, "events": counts}  # fmt: skip
    if variant.method == "rs3l" and result.get("step") is not None:
        from jetfm.pretrain.kinematic_baseline import kinematic_top1

        rs3l = config.get("pretrain", {}).get("rs3l", {})
        extra.update(kinematic_top1(files["val"], int(rs3l.get("events_per_batch", 16)), cfg.eval_batches))
    path = Path(out_dir) / "summary.json"
    if path.is_file() and int(os.environ.get("RANK", "0")) == 0:  # rank 0 wrote it (train/loop.py)
        write_json_atomic(path, {**json.loads(path.read_text()), **extra})
    summary.update({k: v for k, v in extra.items() if isinstance(v, float)})
    print(f"{method}: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()) + f"; events {counts}")
    return {**result, "events": counts, "val": summary}
