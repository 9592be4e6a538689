"""`jetfm finetune`: a ParT tagger on a labelled fraction, from a pretrained backbone or from scratch.

  jetfm finetune --backbone results/pretrain/tiny_mpm/checkpoint.pt --fraction 0.1       # full fine-tune
  jetfm finetune --backbone results/pretrain/tiny_mpm/checkpoint.pt --mode frozen        # linear probe
  jetfm finetune --fraction 0.1                                                          # scratch baseline
The run directory gets what a training run gets (checkpoint.pt, history.csv, metrics.json, ROC, confusion);
metrics.json also names the method, labelled fraction and number of labelled jets.
"""

from __future__ import annotations

import argparse
from typing import Any

from jetfm.cli import add_config_arguments
from jetfm.config import load_config, parse_overrides
from jetfm.train.cli import add_shard_options, add_training_options, resolve_shards
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
    from jetfm.train.finetune import FineTune
    from jetfm.train.loop import train

    pretrained, mode = parse_method(method)
    if (pretrained is None) != (backbone is None):
        raise ValueError(f"finetune method {method!r} and backbone {backbone!r} disagree (scratch has none)")
    cfg = finetune_config(config, seed_index, overrides)
    lr_scale = float(config.get("finetune", {}).get("backbone_lr_scale", 1.0))
    objective = FineTune(method, fraction, backbone, mode, lr_scale, cfg.label_smoothing)
    return train(cfg, files["train"], files["val"], files["test"], out_dir, resume=resume,
                 workflow_config=config, objective=objective)  # fmt: skip


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--backbone", help="pretrained checkpoint (jetfm pretrain / train); omit for scratch")
    parser.add_argument("--mode", choices=("full", "frozen"), default="full",
                        help="full: train all; frozen: linear probe on the frozen backbone")  # fmt: skip
    parser.add_argument("--method", help="run label (default: the backbone's pretraining method, or scratch)")
    parser.add_argument("--fraction", type=float, default=1.0, help="labelled fraction of the training split")
    parser.add_argument("--seed-index", type=int, default=0, help="added to the config seed")
    add_shard_options(parser)
    parser.add_argument(
        "--out", help="run directory (default results/finetune/<dataset>/<method>_<fraction>_<seed index>)"
    )
    add_training_options(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    config = load_config(args.config, parse_overrides(args.overrides))
    dataset = config["dataset"]
    files = resolve_shards(args, config)
    method = args.method
    if method is None:
        pretrained = None
        if args.backbone:
            desc = torch.load(args.backbone, map_location="cpu", weights_only=True).get("objective", {})
            pretrained = desc.get("name", "pretrained")
        method = method_label(pretrained, args.mode)
    out = args.out or f"results/finetune/{dataset}/{method}_{args.fraction:g}_{args.seed_index}"
    result = run_finetuning(config, method, args.fraction, args.seed_index, files, out, args.backbone,
                            parse_overrides(args.train_overrides), args.resume)  # fmt: skip
    m = result.get("metrics") or {}
    if m:
        print(f"{method} @ {args.fraction:g} ({m['labelled_jets']} labelled jets): "
              f"test accuracy {m['accuracy']:.4f}, "
              f"macro AUC {m['macro_auc']}")  # fmt: skip
    return 0
