"""`jetfm <stage> ...`: one CLI over every stage; rules and users call the same functions.

Each stage module exposes `configure_parser(parser)` and `run(args) -> int`; stages are imported lazily
so `jetfm simulate --help` does not import torch.

One error style: a user error (bad config, input file, option; by convention a `ValueError`,
`FileNotFoundError` or `yaml.YAMLError` raised with a message naming file, field, value and expectation)
prints `jetfm <stage>: error: <message>` and exits 2 without a traceback; `--debug` (or JETFM_DEBUG=1) shows
the traceback. An exception carrying an `exit_code` (a training stopped by SIGTERM/SIGUSR1 after its
checkpoint) prints its message and exits with that code. Anything else is an internal error: traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

import yaml

from jetfm import __version__

# stage name -> (module, one-line description)
STAGES: dict[str, tuple[str, str]] = {
    "simulate": ("jetfm.simulate.cli", "generate labelled jets with Pythia 8 in the JetClass ROOT layout"),
    "resimulate": ("jetfm.simulate.resim.cli", "re-simulation views (RS3L) of the same hard events"),
    "preprocess": ("jetfm.preprocess.cli", "coffea/Dask: ROOT jets -> padded HDF5 training shards"),
    "train": ("jetfm.train.cli", "supervised training of a tagger (ParT or baselines)"),
    "pretrain": ("jetfm.pretrain.cli", "self-supervised pretraining (masked particles, RS3L)"),
    "finetune": ("jetfm.finetune.cli", "fine-tune a pretrained backbone for tagging"),
    "export": ("jetfm.finetune.export_cli", "a backbone-only file + model card from a checkpoint"),
    "scaling": ("jetfm.scaling.cli", "model-size x data-size sweeps and loss-surface fits"),
    "fpga": ("jetfm.fpga.cli", "compress, convert with hls4ml, emulate and synthesise"),
    "robustness": ("jetfm.robustness.cli", "taggers on shifted held-out samples, calibration, ensembles"),
    "images": ("jetfm.images.cli", "jet images: average-image figure, CNN transfer-learning study"),
}
USER_ERRORS = (ValueError, FileNotFoundError, yaml.YAMLError)
USAGE_EXIT_CODE = 2


def _top_help() -> str:
    width = max(map(len, STAGES))
    rows = "\n".join(f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items())
    return (
        f"usage: jetfm [--version] [--debug] <stage> [options]\n\nstages:\n{rows}\n\n"
        "`jetfm <stage> --help` for a stage's options; --debug shows tracebacks of user errors."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("JETFM_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in {"-h", "--help"}:
        print(_top_help())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(f"jetfm {__version__}")
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"jetfm: unknown stage {stage!r}\n\n{_top_help()}", file=sys.stderr)
        return USAGE_EXIT_CODE
    module_name, description = STAGES[stage]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"jetfm {stage}", description=description)
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"jetfm {stage}: error: {exc}", file=sys.stderr)
        return USAGE_EXIT_CODE
    except Exception as exc:
        code = getattr(exc, "exit_code", None)
        if code is None or debug:
            raise
        print(f"jetfm {stage}: {exc}", file=sys.stderr)
        return int(code)
