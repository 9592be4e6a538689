"""`jetfm train`: train one model on the HDF5 shards of a dataset (the function Snakemake's rule calls).

Single process:  jetfm train --model part --out results/models/tiny_part
DDP on CPU:      torchrun --nproc-per-node 2 -m jetfm train --model part ...
DDP on Slurm:    srun --ntasks 4 --gpus-per-task 1 jetfm train --model part ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jetfm.cli import add_config_arguments
from jetfm.config import load_config, parse_overrides
from jetfm.train.signals import RETRY_EXIT_CODE

SPLITS = ("train", "val", "test")


def shard_paths(h5_dir: str | Path, split: str, n_shards: int) -> list[str]:
    """`{h5_dir}/{split}/{i:04d}.h5` for the shards its summary.json lists (the preprocessing fan-out writes
    none for an empty group), else for i < n_shards (the preprocessing layout, e.g. shards made elsewhere)."""
    summary = Path(h5_dir) / "summary.json"
    listed = json.loads(summary.read_text()).get("shards") if summary.is_file() else None
    if listed is None:
        return [str(Path(h5_dir) / split / f"{i:04d}.h5") for i in range(n_shards)]
    ids = [s["shard"] for s in listed if s["split"] == split]
    return [str(Path(h5_dir) / split / f"{i:04d}.h5") for i in ids]


def h5_dir_of(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """--h5-dir where the command has and got one, else the preprocessing output results/h5/<dataset>."""
    return getattr(args, "h5_dir", None) or f"results/h5/{config['dataset']}"


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


def run_training(
    config: dict[str, Any],
    model: str,
    files: dict[str, list[str]],
    out_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    resume: bool | str = False,
) -> dict[str, Any]:
    """Workflow config + model name + split files -> a trained run in out_dir (CLI and Snakemake entry).

    resume: True continues <out_dir>/checkpoint.pt (refusing another config), "auto" continues an unfinished
    run of the same config if there is one (jetfm.train.resume), False starts from scratch.
    """
    from jetfm.train.config import from_workflow
    from jetfm.train.loop import train

    cfg = from_workflow(config, model, overrides)
    return train(
        cfg, files["train"], files["val"], files.get("test"), out_dir, resume=resume, workflow_config=config
    )


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
    out = args.out or f"results/models/{config['dataset']}_{args.model}"
    overrides = parse_overrides(args.train_overrides, option="--train-set")
    result = run_training(config, args.model, files, out, overrides, args.resume)
    metrics = result.get("metrics")
    if metrics:
        print(f"{args.model}: test accuracy {metrics['accuracy']:.4f}, macro AUC {metrics['macro_auc']}")
    return 0
