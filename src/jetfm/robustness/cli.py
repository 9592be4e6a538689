"""`jetfm robustness`: the robustness stage without Snakemake (same functions as the rules).

  jetfm robustness sample --cls Hbb --shard 0          held-out views file of one class and shard
  jetfm robustness evaluate --model mlp                one run (+ its ensemble members) on every sample
  jetfm robustness table                               robustness.csv + figure from the evaluations

Default paths follow the workflow's layout under --results (preprocess the held-out views files with
the rule `robustness_preprocess`, or `jetfm preprocess` with the config of `samples.preprocess_config`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from jetfm.options import add_config_arguments


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--results", help="results directory (default: the config's results_dir)")
    sub = parser.add_subparsers(dest="action", required=True)
    sample = sub.add_parser("sample", help="held-out views file (nominal + shifts) of one class and shard")
    sample.add_argument("--cls", required=True, help="jet class, e.g. Hbb")
    sample.add_argument("--shard", type=int, default=0, help="shard number (seeds and event ids)")
    sample.add_argument("--out", help="output path (default: the workflow's)")
    evaluate = sub.add_parser("evaluate", help="one run and its ensemble members on every sample")
    evaluate.add_argument("--model", required=True, help="a robustness.models entry, e.g. mlp")
    sub.add_parser("table", help="robustness.csv and robustness.png from the evaluations")


def run(args: argparse.Namespace) -> int:
    from jetfm.config import load_config, parse_overrides
    from jetfm.robustness import runs

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config, parse_overrides(args.overrides))
    from jetfm import paths

    results, dataset = Path(args.results or paths.RESULTS), config["dataset"]
    out_dir = results / "robustness" / dataset
    if args.action == "sample":
        from jetfm.robustness.samples import write_sample_shard

        out = args.out or str(out_dir / "sim" / args.cls / f"{args.shard:04d}.views.root")
        counts = write_sample_shard(config, args.cls, args.shard, out, progress=True)
        print(f"wrote {out}: {counts['events_written']} events x {counts['views']} versions")
        return 0
    if args.action == "evaluate":
        from jetfm.options import split_shards
        from jetfm.robustness.evaluate import run_evaluation

        run = runs.run_of(args.model, dataset)
        files = split_shards(results / "h5" / dataset, config)
        files["dataset"] = files["train"] + files["val"] + files["test"]
        files["sample"] = [str(results / "h5" / f"{dataset}_robustness" / "test" / "0000.h5")]
        outputs = {
            "temperature": str(results / run / "temperature.json"),
            "evaluation": str(out_dir / run / "evaluation.json"),
            "reliability": str(out_dir / run / "reliability.png"),
        }
        members = [str(results / m) for m in runs.member_runs(run, dataset, config["robustness"]["ensemble"])]
        result = run_evaluation(
            config, runs.label_of(run, dataset), str(results / run), files, outputs, members
        )
        nominal = result["single"]["nominal"]
        print(f"{result['model']}: nominal accuracy {nominal['accuracy']:.3f}, T = "
              f"{result['temperature']['temperature']:.3g} -> {outputs['evaluation']}")  # fmt: skip
        return 0
    from jetfm.robustness.plots import plot_robustness
    from jetfm.robustness.table import write_table

    evaluations = [
        out_dir / runs.run_of(name, dataset) / "evaluation.json" for name in config["robustness"]["models"]
    ]
    loaded = write_table(evaluations, out_dir / "robustness.csv")
    plot_robustness(loaded, out_dir / "robustness.png")
    print(f"wrote {out_dir / 'robustness.csv'} ({len(loaded)} models)")
    return 0
