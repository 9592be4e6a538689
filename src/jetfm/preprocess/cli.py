"""`jetfm preprocess`: the same function the Snakemake rule calls, without Snakemake."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from jetfm.options import add_config_arguments


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "inputs", nargs="*",
        help="ROOT files in the JetClass layout: files, directories (their *.root files) or quoted globs "
        "(default: the simulation outputs named by the config, plus preprocess.input_files)",
    )  # fmt: skip
    parser.add_argument("--out-dir", help="output directory (default: <results_dir>/h5/<dataset>)")
    parser.add_argument(
        "--results", help="results directory holding sim/ (default inputs; default: the config's results_dir)"
    )
    parser.add_argument(
        "--group", type=int,
        help="run only this fan-out group (files whose index mod preprocess.shards_per_split is GROUP) and "
        "write groups/GROUP.json, not summary.json (default: every group, then the summary)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from jetfm import paths
    from jetfm.config import load_config, parse_overrides
    from jetfm.paths import expand_input_files, preprocess_inputs
    from jetfm.preprocess.groups import assign_groups, run_groups
    from jetfm.preprocess.inputs import InputFileError
    from jetfm.preprocess.run import preprocess

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config, parse_overrides(args.overrides))
        args.results = args.results or paths.RESULTS
        if args.inputs:
            inputs = expand_input_files(args.inputs, "jetfm preprocess inputs")
        else:
            inputs = preprocess_inputs(config, args.results)
        out_dir = args.out_dir or str(Path(args.results) / "h5" / config["dataset"])
        progress = not args.no_progress
        if args.group is None:
            summary = run_groups(config, inputs, out_dir, progress=progress)
        else:
            files = assign_groups(inputs, config["preprocess"]["shards_per_split"]).get(args.group, [])
            summary = preprocess(config, files, out_dir, progress=progress, group=args.group)
    except (InputFileError, ValueError, FileNotFoundError) as exc:  # bad input or config: a message
        print(f"jetfm preprocess: {exc}", file=sys.stderr)
        return 1
    c = summary["counts"]
    print(f"{c['jets_in']} jets in, {c['jets_out']} out ({c['per_split']}), "
          f"{c['files_skipped']} file(s) skipped -> {out_dir}")  # fmt: skip
    return 0
