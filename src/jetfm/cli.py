"""`jetfm <stage> ...`: one CLI over every stage; rules and users call the same functions.

Each stage module exposes `configure_parser(parser)` and `run(args) -> int`; stages are imported lazily
so `jetfm simulate --help` does not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# stage name -> (module, one-line description)
STAGES: dict[str, tuple[str, str]] = {
    "simulate": ("jetfm.simulate.cli", "generate labelled jets with Pythia 8 in the JetClass ROOT layout"),
    "resimulate": ("jetfm.simulate.resim_cli", "re-simulation views (RS3L) of the same hard events"),
    "preprocess": ("jetfm.preprocess.cli", "coffea/Dask: ROOT jets -> padded HDF5 training shards"),
    "train": ("jetfm.train.cli", "supervised training of a tagger (ParT or baselines)"),
    "pretrain": ("jetfm.train.pretrain_cli", "self-supervised pretraining (masked particles, RS3L)"),
    "finetune": ("jetfm.train.finetune_cli", "fine-tune a pretrained backbone for tagging"),
    "scaling": ("jetfm.scaling.cli", "model-size x data-size sweeps and loss-surface fits"),
    "fpga": ("jetfm.fpga.cli", "compress, convert with hls4ml, emulate and synthesise"),
    "robustness": ("jetfm.robustness.cli", "taggers on shifted held-out samples, calibration, ensembles"),
}


def _top_help() -> str:
    width = max(map(len, STAGES))
    rows = "\n".join(f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items())
    return (
        f"usage: jetfm <stage> [options]\n\nstages:\n{rows}\n\n`jetfm <stage> --help` for a stage's options."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_top_help())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"jetfm: unknown stage {stage!r}\n\n{_top_help()}", file=sys.stderr)
        return 2
    module_name, description = STAGES[stage]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"jetfm: stage {stage!r} is not implemented yet ({module_name} missing)", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"jetfm {stage}", description=description)
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every stage shares: the config file and dotted overrides."""
    parser.add_argument("--config", default="config/config.yaml", help="workflow config YAML")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set simulate.jets_per_shard=50 (repeatable)",
    )  # fmt: skip
