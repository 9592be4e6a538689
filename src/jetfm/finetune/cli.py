"""`jetfm finetune`: a ParT tagger on a labelled fraction, from a pretrained backbone or from scratch.

  jetfm finetune --backbone results/pretrain/tiny_mpm/checkpoint.pt --fraction 0.1       # full fine-tune
  jetfm finetune --backbone results/pretrain/tiny_mpm/checkpoint.pt --mode frozen        # linear probe
  jetfm finetune --fraction 0.1                                                          # scratch baseline
The run directory gets what a training run gets (checkpoint.pt, history.csv, metrics.json, ROC, confusion);
metrics.json also names the method, labelled fraction and number of labelled jets.
"""

from __future__ import annotations

import argparse

from jetfm.config import load_config, parse_overrides
from jetfm.finetune.run import method_label, run_finetuning
from jetfm.options import add_config_arguments, add_shard_options, add_training_options, resolve_shards
from jetfm.paths import finetune_run_dir


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
    out = args.out or finetune_run_dir(dataset, method, args.fraction, args.seed_index)
    result = run_finetuning(config, method, args.fraction, args.seed_index, files, out, args.backbone,
                            parse_overrides(args.train_overrides), args.resume)  # fmt: skip
    m = result.get("metrics") or {}
    if m:
        print(f"{method} @ {args.fraction:g} ({m['labelled_jets']} labelled jets): "
              f"test accuracy {m['accuracy']:.4f}, "
              f"macro AUC {m['macro_auc']}")  # fmt: skip
    return 0
