"""`jetfm simulate`: one class x shard to a JetClass ROOT file, the same function the Snakemake rule calls."""

from __future__ import annotations

import argparse
import logging
import sys

from jetfm import CLASSES
from jetfm.options import add_config_arguments


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--cls", required=True, choices=CLASSES, help="jet class to generate")
    parser.add_argument(
        "--shard", type=int, default=0, help="shard index (seeds and event ids derive from it)"
    )
    parser.add_argument("--out", required=True, help="output ROOT file (written atomically)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from jetfm.config import load_config, parse_overrides
    from jetfm.simulate.run import simulate_shard

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, parse_overrides(args.overrides))
        counts = simulate_shard(config, args.cls, args.shard, args.out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:  # bad config or request: a message, not a traceback
        print(f"jetfm simulate: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {counts['jets_written']} of {counts['jets_requested']} jets to {args.out}"
          + (f" (shortfall {counts['shortfall']}, see the log)" if counts["shortfall"] else ""))  # fmt: skip
    return 0
