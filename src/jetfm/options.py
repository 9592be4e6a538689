"""Command-line options that several stages share: the config file and overrides, the shard lists of a
command, and the options of a training command. The stage CLIs (`<stage>/cli.py`) add them to their
parsers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jetfm.paths import SPLITS, h5_dir, shard_paths


def add_config_arguments(parser: argparse.ArgumentParser, subcommand: bool = False) -> None:
    """The options every stage shares: the config file and dotted overrides. `subcommand`: the same options
    on a subcommand's parser, without defaults of their own, so `jetfm scaling cost --config X` and
    `jetfm scaling --config X cost` mean the same."""
    default = argparse.SUPPRESS if subcommand else None
    parser.add_argument(
        "--config", default=default or "config/config.yaml", help="workflow config YAML"
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=default or [], metavar="KEY=VALUE",
        help="override a config value, e.g. --set simulate.jets_per_shard=50 (repeatable)",
    )  # fmt: skip


def h5_dir_of(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """--h5-dir where the command has and got one, else the preprocessing output results/h5/<dataset>."""
    return getattr(args, "h5_dir", None) or h5_dir(config["dataset"])


def split_shards(
    h5_dir: str | Path, config: dict[str, Any], given: dict[str, list[str] | None] | None = None
) -> dict[str, list[str]]:
    """{train, val, test: shard paths}: the lists in `given` where set, else the shards of h5_dir."""
    n = config["preprocess"]["shards_per_split"]
    return {s: (given or {}).get(s) or shard_paths(h5_dir, s, n) for s in SPLITS}


def resolve_shards(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, list[str]]:
    """The split files of a command: its --train/--val/--test lists (`add_shard_options`), else --h5-dir's."""
    return split_shards(h5_dir_of(args, config), config, {s: getattr(args, s, None) for s in SPLITS})


def add_shard_options(parser: argparse.ArgumentParser, splits: bool = True) -> None:
    """--h5-dir and, with `splits`, --train/--val/--test shard lists that override it (`resolve_shards`)."""
    parser.add_argument("--h5-dir", help="preprocessed shards directory (default results/h5/<dataset>)")
    for split in SPLITS if splits else ():
        parser.add_argument(
            f"--{split}", nargs="+", metavar="H5", help=f"{split} shards (overrides --h5-dir)"
        )


def add_training_options(
    parser: argparse.ArgumentParser,
    resume_help: str = "continue exactly from <out>/checkpoint.pt",
    train_set_help: str = "override a training config field of this run (repeatable)",
) -> None:
    """--resume and the repeatable --train-set KEY=VALUE (into args.train_overrides) of a training command."""
    parser.add_argument("--resume", action="store_true", help=resume_help)
    parser.add_argument(
        "--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
        help=train_set_help,
    )  # fmt: skip
