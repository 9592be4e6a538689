"""`jetfm export`: a backbone-only file and its model card from a pretraining (or any ParT) checkpoint.

  jetfm export results/pretrain/pretrain-demo_rs3l/checkpoint.pt     # -> <that run>/export/
  jetfm export CKPT --out my_backbone/ --train results/h5/pretrain-demo/train/0000.h5
The inputs (feature names, order, normalisation) come from the training shards listed in the summary.json
next to the checkpoint, or from --train. Then: `jetfm finetune --from <out>/backbone.pt ...`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="checkpoint.pt of a pretraining, fine-tuning or supervised ParT run"
    )
    parser.add_argument("--out", help="output directory (default: <checkpoint dir>/export)")
    parser.add_argument(
        "--train", nargs="+", metavar="H5", help="training shards (default: from summary.json)"
    )


def run(args: argparse.Namespace) -> int:
    from jetfm.finetune.export import export_backbone

    out = args.out or str(Path(args.checkpoint).parent / "export")
    card = export_backbone(args.checkpoint, out, args.train)
    arch = card["architecture"]
    print(f"exported {arch['parameters']:,}-parameter ParT backbone to {out}/backbone.pt "
          f"(inputs: {card['inputs']['num_features']} features; card: {out}/model_card.md)")  # fmt: skip
    return 0
