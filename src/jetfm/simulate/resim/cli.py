"""`jetfm resimulate`: K re-simulation views (RS3L) of the same hard events for one class and shard."""

from __future__ import annotations

import argparse
import logging

from jetfm.config import load_config, parse_overrides
from jetfm.options import add_config_arguments


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--cls", required=True, help="jet class, e.g. Tbqq")
    parser.add_argument("--shard", type=int, required=True, help="shard number (seeds and event ids)")
    parser.add_argument("--out", required=True, help="output *.views.root path")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def run(args: argparse.Namespace) -> int:
    from jetfm.simulate.resim.run import resimulate_shard

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config, parse_overrides(args.overrides))
    counts = resimulate_shard(config, args.cls, args.shard, args.out, progress=not args.no_progress)
    print(f"wrote {args.out}: {counts['events_written']} events x {counts['views']} views")
    return 0
