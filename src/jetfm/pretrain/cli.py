"""`jetfm pretrain`: self-supervised pretraining of the ParT backbone on the training split (no labels).

  jetfm pretrain --method tokenizer                 # VQ-VAE particle tokenizer (for mpm_tok)
  jetfm pretrain --method mpm                       # masked particles, continuous targets
  jetfm pretrain --method mpm_tok                   # masked particles, token targets (uses the tokenizer run)
  jetfm pretrain --method rs3l                      # re-simulation contrastive
  srun --ntasks 4 --gpus-per-task 1 jetfm pretrain --method mpm   # DDP, as `jetfm train`
Outputs in results/pretrain/<dataset>_<method>/: checkpoint.pt (backbone + head), history.csv, loss.png,
summary.json. Fine-tune with `jetfm finetune --backbone <dir>/checkpoint.pt`.
"""

from __future__ import annotations

import argparse

from jetfm.config import load_config, parse_overrides
from jetfm.options import add_config_arguments, add_shard_options, add_training_options, resolve_shards
from jetfm.paths import pretrain_dir


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from jetfm.pretrain.objectives import METHODS, TOKENIZER

    add_config_arguments(parser)
    known = [*METHODS, TOKENIZER]
    parser.add_argument(
        "--method", required=True,
        help=f"what to pretrain: one of {known}, optionally with -u<unlabelled fraction> and/or "
        "-s<seed index> (e.g. mpm-s1)",
    )  # fmt: skip
    parser.add_argument("--tokenizer", help="tokenizer checkpoint for mpm_tok "
                        "(default results/pretrain/<dataset>_tokenizer/checkpoint.pt)")  # fmt: skip
    add_shard_options(parser)
    parser.add_argument("--out", help="run directory (default results/pretrain/<dataset>_<method>)")
    add_training_options(parser)


def run(args: argparse.Namespace) -> int:
    from jetfm.pretrain.objectives import METHODS, TOKENIZER
    from jetfm.pretrain.run import run_pretraining
    from jetfm.pretrain.variants import parse_variant

    variant = parse_variant(args.method)
    if variant.method not in (*METHODS, TOKENIZER):
        known = [*METHODS, TOKENIZER]
        raise ValueError(f"--method {args.method}: unknown method {variant.method!r}; known {known}")

    config = load_config(args.config, parse_overrides(args.overrides))
    dataset = config["dataset"]
    files = resolve_shards(args, config)
    tokenizer = args.tokenizer or f"{pretrain_dir(dataset, TOKENIZER)}/checkpoint.pt"
    run_pretraining(
        config, args.method, files, args.out or pretrain_dir(dataset, args.method),
        parse_overrides(args.train_overrides), tokenizer if variant.method == "mpm_tok" else None,
        args.resume,
    )  # fmt: skip
    return 0
