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

from jetfm.cli import add_config_arguments
from jetfm.config import load_config, parse_overrides
from jetfm.train.cli import SPLITS, shard_paths


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from jetfm.train.pretrain import METHODS, TOKENIZER

    add_config_arguments(parser)
    parser.add_argument("--method", required=True, choices=[*METHODS, TOKENIZER], help="what to pretrain")
    parser.add_argument("--tokenizer", help="tokenizer checkpoint for mpm_tok "
                        "(default results/pretrain/<dataset>_tokenizer/checkpoint.pt)")  # fmt: skip
    parser.add_argument("--h5-dir", help="preprocessed shards directory (default results/h5/<dataset>)")
    for split in SPLITS:
        parser.add_argument(
            f"--{split}", nargs="+", metavar="H5", help=f"{split} shards (overrides --h5-dir)"
        )
    parser.add_argument("--out", help="run directory (default results/pretrain/<dataset>_<method>)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from <out>/checkpoint.pt")
    parser.add_argument(
        "--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a training config field of this run (repeatable)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from jetfm.train.pretrain import run_pretraining

    config = load_config(args.config, parse_overrides(args.overrides))
    dataset = config["dataset"]
    h5_dir = args.h5_dir or f"results/h5/{dataset}"
    n = config["preprocess"]["shards_per_split"]
    files = {s: getattr(args, s) or shard_paths(h5_dir, s, n) for s in SPLITS}
    tokenizer = args.tokenizer or f"results/pretrain/{dataset}_tokenizer/checkpoint.pt"
    run_pretraining(
        config, args.method, files, args.out or f"results/pretrain/{dataset}_{args.method}",
        parse_overrides(args.train_overrides), tokenizer if args.method == "mpm_tok" else None, args.resume,
    )  # fmt: skip
    return 0
