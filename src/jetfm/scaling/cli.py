"""`jetfm scaling`: the sweep's steps one by one (what the Snakemake rules call) or all at once.

jetfm scaling cells                                   # the grid's cell ids
jetfm scaling run --h5-dir results/h5/tiny            # the whole sweep in this process
jetfm scaling subset --split train --jets 512 --out train_D512.h5
jetfm scaling cell --cell s-D512-E1 --train-subset train_D512.h5 --val-subset val.h5 --out cells/s-D512-E1
jetfm scaling collect cells/*/result.json --out runs.csv
jetfm scaling fit --runs runs.csv --out-dir results/scaling/tiny
jetfm scaling calibrate results/scaling/tiny/cells/*/result.json   # the LR rule fitted to the searches
jetfm scaling forecast --config config/scaling.yaml --reference docs/results/scaling-demo/fit.json
"""

from __future__ import annotations

import argparse
import json

from jetfm.config import load_config, parse_overrides
from jetfm.options import add_config_arguments


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    shared = argparse.ArgumentParser(add_help=False)
    add_config_arguments(shared, subcommand=True)  # --config/--set also after the subcommand
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[shared])

    command("cells", "print the grid's cell ids and their settings")
    command("cost", "expected accelerator-hours of the grid and the Slurm hours requested")
    run = command("run", "the whole sweep in this process (cells with a current result.json are kept)")
    run.add_argument("--h5-dir", help="preprocessed shards (default results/h5/<dataset>)")
    run.add_argument("--out-dir", help="default results/scaling/<sweep>")
    run.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    subset = command("subset", "the first JETS nominal jets of a split's fixed order, one shard")
    subset.add_argument("--split", choices=("train", "val", "test"), default="train")
    subset.add_argument("--jets", type=int, required=True)
    subset.add_argument("--h5-dir", help="preprocessed shards (default results/h5/<dataset>)")
    subset.add_argument("--out", required=True)
    cell = command("cell", "train one cell at every candidate learning rate; write result.json")
    cell.add_argument("--cell", required=True, help="cell id <size>-D<jets>-E<epochs> (see `cells`)")
    cell.add_argument("--train-subset", required=True)
    cell.add_argument("--val-subset", required=True, help="selects the learning rate and stopping step")
    cell.add_argument("--test-subset", help="scores the chosen weights (default: the validation subset)")
    cell.add_argument("--out", required=True, help="cell directory")
    cell.add_argument("--threads", type=int, default=0)
    collect = command("collect", "cells' result.json -> runs.csv")
    collect.add_argument("results", nargs="+")
    collect.add_argument("--out", required=True)
    fit = command("fit", "runs.csv -> fit.json and figures")
    fit.add_argument("--runs", required=True)
    fit.add_argument("--out-dir", required=True)
    calibrate = command("calibrate", "fit the learning-rate rule's exponents to the cells' LR searches")
    calibrate.add_argument("results", nargs="+", help="cells' result.json files")
    forecast = command("forecast", "uncertainties this config's grid should give, from a measured sweep")
    forecast.add_argument("--reference", required=True, help="a measured sweep's fit.json (runs.csv beside)")
    forecast.add_argument("--trials", type=int, default=5)
    compare = command("compare", "fits of several sweeps side by side (e.g. scratch vs pretrained)")
    compare.add_argument("fits", nargs="+", metavar="LABEL=FIT_JSON", help="the first is the reference")
    compare.add_argument("--out", required=True, help="comparison CSV")


def run(args: argparse.Namespace) -> int:
    from jetfm.options import h5_dir_of
    from jetfm.scaling import grid, sweep

    config = load_config(args.config, parse_overrides(args.overrides))
    h5_dir = h5_dir_of(args, config)
    if args.command == "cells":
        for c in grid.cells(config["scaling"]):
            print(c.id, json.dumps(grid.cell_settings(config, c.id), sort_keys=True))
    elif args.command == "cost":
        cost = grid.expected_cost(config)
        print(
            f"{cost['cells']} cells: {cost['compute_hours']:.1f} h of training compute + "
            f"{cost['overhead_hours']:.1f} h start-up/evaluation = {cost['expected_hours']:.1f} "
            f"accelerator-hours expected; Slurm requests {cost['requested_hours']:.1f} h (x2 margins)"
        )
    elif args.command == "subset":
        from jetfm.scaling.subset import write_subset

        files = sweep.split_files(h5_dir, args.split, config)
        print(write_subset(files, args.jets, args.out, config["scaling"]["subset_seed"], args.split))
    elif args.command == "cell":
        from jetfm.scaling.cell import run_cell

        run_cell(
            config, args.cell, args.train_subset, args.val_subset, args.out, args.threads, args.test_subset
        )
    elif args.command == "collect":
        from jetfm.scaling.runs import collect

        print(f"{len(collect(args.results, args.out))} cells -> {args.out}")
    elif args.command == "calibrate":
        from jetfm.scaling.lr import calibrate, calibration_points

        rule = config["scaling"]["lr"]
        fitted = calibrate(calibration_points(args.results), rule["ref_width"], rule.get("ref_steps", 1))
        print(json.dumps(fitted, indent=1))
    elif args.command == "forecast":
        from jetfm.scaling.forecast import forecast, read_reference

        print(json.dumps(forecast(config, *read_reference(args.reference), trials=args.trials), indent=1))
    elif args.command == "compare":
        from jetfm.scaling.compare import compare_fits

        pairs = dict(item.split("=", 1) for item in args.fits)
        for row in compare_fits(pairs, args.out):
            print(f"{row['sweep']:>12} {row['quantity']:>6} = {row['value']:.4g} ± {row['uncertainty']:.2g}"
                  f"  ({row['pull_vs_first']:+.1f} σ vs first)")  # fmt: skip
    elif args.command == "fit":
        print(sweep.describe(sweep.fit_sweep(config, args.runs, args.out_dir)))
    else:  # run
        out = args.out_dir or sweep.sweep_dir(config)
        print(sweep.describe(sweep.run_sweep(config, h5_dir, out, args.threads)))
    return 0
