"""`jetfm fpga <step>`: distil + compress, convert + emulate, synthesise, tables (what the rules call).

Examples::

  jetfm fpga train --student deepsets       # results/fpga/deepsets/{float,qat}/
  jetfm fpga convert --student deepsets     # results/fpga/deepsets/{hls/,emulation.json}
  jetfm fpga synth --student deepsets       # results/fpga/deepsets/synthesis.json
  jetfm fpga all                            # every configured student, then the tables
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jetfm import paths
from jetfm.config import load_config, parse_overrides
from jetfm.fpga.kinds import kind_of
from jetfm.options import add_config_arguments, add_shard_options, resolve_shards

STEPS = ("train", "convert", "synth", "all")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("step", choices=STEPS, help="train | convert | synth | all (every student + tables)")
    parser.add_argument("--student", help="the student: a name in fpga.students (every step but `all`)")
    parser.add_argument(
        "--teacher", help="teacher checkpoint (default: fpga.teacher, else the supervised ParT)"
    )
    add_shard_options(parser, splits=False)
    parser.add_argument("--out", help="student directory (default results/fpga/<student>)")


def run(args: argparse.Namespace) -> int:
    from jetfm.fpga import stage

    config = load_config(args.config, parse_overrides(args.overrides))
    files = resolve_shards(args, config)
    if args.step != "all" and not args.student:
        raise SystemExit(f"jetfm fpga {args.step}: --student is required")
    students = config["fpga"]["students"] if args.step == "all" else [args.student]
    for student in students:  # its kind is known (the config's own students are validated already)
        kind_of(student, config["fpga"]["sizes"].get(student))
    for student in students:
        out = Path(args.out or paths.fpga_dir(student))
        if args.step in ("train", "all"):
            stage.train_student(config, student, files, out, args.teacher)
        if args.step in ("convert", "all"):
            stage.convert_student(config, student, files["test"], out, args.teacher)
        if args.step in ("synth", "all"):
            stage.synthesise_student(config, student, files["test"], out)
    if args.step == "all":
        root = Path(paths.fpga_dir())
        stage.write_tables(
            [str(root / s / "emulation.json") for s in students],
            [str(root / s / "synthesis.json") for s in students],
            str(root / "accuracy.csv"),
            str(root / "synthesis.csv"),
            trigger_out=str(root / "trigger.csv"),
            pareto_out=str(root / "pareto.csv"),
            pareto_plot=str(root / "pareto.png"),
        )
    return 0
