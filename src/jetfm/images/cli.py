"""`jetfm images plot|transfer`: the functions the Snakemake rules images_plot / images_transfer call.

    jetfm images plot --out results/images/tiny/average_images.png
    jetfm images transfer --set images.transfer.pretrained_file=resnet18.pth \
        --set train.sizes.cnn='{preset: resnet18}' --set images.transfer.size='{preset: resnet18}'

(Registered in jetfm.cli as the `images` stage; until then: `python -m jetfm.images.cli ...`.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jetfm.options import add_config_arguments, add_shard_options


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("action", choices=("plot", "transfer"), help="average-image figure or transfer study")
    add_shard_options(parser, splits=False)
    parser.add_argument("--out", help="figure path (plot) or output directory (transfer)")
    parser.add_argument("--source-checkpoint", help="jetfm CNN checkpoint of the source task (transfer)")


def run(args: argparse.Namespace) -> int:
    from jetfm import paths
    from jetfm.config import load_config, parse_overrides
    from jetfm.models import make_size
    from jetfm.options import resolve_shards

    try:
        config = load_config(args.config, parse_overrides(args.overrides))
        files = resolve_shards(args, config)
        out = args.out or paths.images_dir(config["dataset"])  # results_dir from the config
        if args.action == "plot":
            from jetfm.images.plots import write_average_images

            path = out if out.endswith(".png") else str(Path(out) / "average_images.png")
            spec = make_size("cnn", config["train"]["sizes"]["cnn"]).image_spec()
            max_jets = config["images"]["plot_max_jets"]
            summary = write_average_images(files["test"], spec, path, max_jets, config)
            print(f"{path}: {summary['jets_per_class']}")
        else:
            from jetfm.images.study import run_transfer_study

            source = args.source_checkpoint or config["images"]["transfer"]["source_checkpoint"] or None
            run_transfer_study(config, files, str(Path(out) / "transfer"), source_checkpoint=source)
    except (ValueError, FileNotFoundError) as exc:  # bad input or config: one line
        print(f"jetfm images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="jetfm images", description=__doc__.splitlines()[0])
    configure_parser(_parser)
    sys.exit(run(_parser.parse_args()))
