"""`jetfm finetune`: a ParT tagger on a labelled fraction, from a pretrained backbone or from scratch.

  jetfm finetune --backbone results/pretrain/tiny_mpm/checkpoint.pt --fraction 0.1       # full fine-tune
  jetfm finetune --backbone results/pretrain/tiny_mpm/checkpoint.pt --mode frozen        # linear probe
  jetfm finetune --fraction 0.1                                                          # scratch baseline
  jetfm finetune --from export/backbone.pt --data my_jets.h5 --adapter four_vectors     # your own HDF5
`--from` takes an exported backbone (`jetfm export`) or a checkpoint; its size comes from the file, and the
data's particle features must match the backbone's (else the run stops naming both). `--data` is a user's
HDF5 with particle 4-vectors and labels (`jetfm.finetune.adapter`), converted into <out>/data/.
The run directory gets what a training run gets (checkpoint.pt, history.csv, metrics.json, ROC, confusion);
metrics.json also names the method, labelled fraction and number of labelled jets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import h5py

from jetfm.config import load_config, parse_overrides
from jetfm.finetune.methods import method_label
from jetfm.finetune.run import run_finetuning
from jetfm.options import add_config_arguments, add_shard_options, add_training_options, resolve_shards
from jetfm.paths import finetune_run_dir


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--backbone",
        "--from",
        dest="backbone",
        help="pretrained backbone: exported (jetfm export) or a checkpoint; omit for scratch",
    )
    parser.add_argument("--data", help="a user's HDF5 file (4-vectors + label) instead of jetfm shards")
    parser.add_argument(
        "--adapter", choices=("four_vectors",), help="input adapter for --data (needed with it)"
    )
    parser.add_argument(
        "--hparams", help="JSON of a validation-sweep choice ({'chosen': {lr, weight_decay, dropout}})"
    )
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


def adapt_user_data(
    data: str, adapter: str | None, backbone: str | None, out: Path
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """A user's HDF5 -> jetfm shards with the backbone's features (the adapter needs the backbone's list)."""
    from jetfm.finetune.adapter import adapt_hdf5
    from jetfm.finetune.backbone import read_backbone
    from jetfm.preprocess.features import PARTICLE_FEATURE_NAMES

    if adapter is None:
        raise ValueError(
            f"finetune --data {data}: give --adapter four_vectors (how its features are computed)"
        )
    spec = read_backbone(backbone) if backbone else None
    names = spec.feature_names if spec and spec.feature_names else PARTICLE_FEATURE_NAMES
    files = adapt_hdf5(data, out, tuple(names), spec.normalisation if spec else None, adapter=adapter)
    with h5py.File(files["train"][0], "r") as f:
        record = json.loads(f.attrs["adapter"])
    print(f"adapter {adapter}: computed {record['computed']}; filled with 0: {record['filled_with_zero']}")
    return files, record


def run(args: argparse.Namespace) -> int:
    import torch

    config = load_config(args.config, parse_overrides(args.overrides))
    dataset = config["dataset"]
    method = args.method
    if method is None:
        pretrained = None
        if args.backbone:
            desc = torch.load(args.backbone, map_location="cpu", weights_only=True).get("objective", {})
            pretrained = desc.get("name", "pretrained")
        method = method_label(pretrained, args.mode)
    out = args.out or finetune_run_dir(dataset, method, args.fraction, args.seed_index)
    adapter = None
    if args.data:
        files, adapter = adapt_user_data(args.data, args.adapter, args.backbone, Path(out) / "data")
    else:
        files = resolve_shards(args, config)
    result = run_finetuning(config, method, args.fraction, args.seed_index, files, out, args.backbone,
                            parse_overrides(args.train_overrides), args.resume, args.hparams,
                            adapter)  # fmt: skip
    m = result.get("metrics") or {}
    if m:
        print(f"{method} @ {args.fraction:g} ({m['labelled_jets']} labelled jets): "
              f"test accuracy {m['accuracy']:.4f}, "
              f"macro AUC {m['macro_auc']}")  # fmt: skip
    return 0
