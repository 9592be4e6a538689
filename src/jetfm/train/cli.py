"""`jetfm train`: train one model on the HDF5 shards of a dataset (the function Snakemake's rule calls).

Single process:  jetfm train --model part --out results/models/tiny_part
DDP on CPU:      torchrun --nproc-per-node 2 -m jetfm train --model part ...
DDP on Slurm:    srun --ntasks 4 --gpus-per-task 1 jetfm train --model part ...
"""

from __future__ import annotations

import argparse

from jetfm.config import load_config, parse_overrides
from jetfm.options import add_config_arguments, add_shard_options, add_training_options, resolve_shards
from jetfm.paths import model_dir
from jetfm.train.signals import RETRY_EXIT_CODE


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--model", default="part", help="registry name: part|pfn|mlp|cnn (default part)")
    add_shard_options(parser)
    parser.add_argument("--out", help="run directory (default results/models/<dataset>_<model>)")
    add_training_options(
        parser,
        resume_help="continue exactly from <out>/checkpoint.pt (or <out>/.resume/checkpoint.pt); a run "
        f"stopped by SIGTERM/SIGUSR1 exits with {RETRY_EXIT_CODE} after its checkpoint",
        train_set_help="override a training config field, e.g. --train-set max_steps=50 "
        "(repeatable; unknown keys fail)",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, parse_overrides(args.overrides))
    files = resolve_shards(args, config)
    out = args.out or model_dir(config["dataset"], args.model)
    overrides = parse_overrides(args.train_overrides, option="--train-set")
    from jetfm.train.run import run_training

    result = run_training(config, args.model, files, out, overrides, args.resume)
    metrics = result.get("metrics")
    if metrics:
        print(f"{args.model}: test accuracy {metrics['accuracy']:.4f}, macro AUC {metrics['macro_auc']}")
    return 0
