"""DDP scaling: training jets/s on 1 and N ranks through the workflow's launcher, and the scaling efficiency.

Weak scaling: each rank keeps `--batch` jets per step, so N ranks train on N x batch jets per step; the
efficiency is jets/s(N) / (N x jets/s(1)). Every configuration is the real path a rule takes
(`jetfm.train.launch.run` -> torchrun -> the training loop), on the same HDF5 shard, and the ratio comes from
one invocation: the configurations alternate `--repeats` times (1, N, 1, N, ...) so a machine's changing load
hits both alike, and each one's jets/s is the median over its repeats. Rates come from the loop's own history
rows (jets and wall time per step) after `--warmup` steps: process start-up and the first steps' allocations
are left out.

    .venv/bin/python bench/ddp.py                       # CPU: 1 and 2 gloo ranks, 1 thread each
    .venv/bin/python bench/ddp.py --device cuda --ranks 1 2 4 --batch 512 --preset jetclass --steps 100
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.train import make_jets, write_shard

from jetfm.train import launch


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts to time (default 1 2)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=32, help="jets per step per rank (default 32)")
    p.add_argument("--steps", type=int, default=25, help="optimiser steps per configuration (default 25)")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the rate (default 5)")
    p.add_argument("--repeats", type=int, default=1, help="alternations of the configurations (default 1)")
    p.add_argument("--preset", default="small", help="ParT size preset (default small)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank on CPU (default 1)")
    p.add_argument("--jets", type=int, default=4096, help="jets in the training shard (default 4096)")
    return p.parse_args()


def make_data(root: Path, jets: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    return {
        split: [str(write_shard(root / split / "0000.h5", make_jets(n, rng, 64), chunk=64))]
        for split, n in (("train", jets), ("val", 256), ("test", 256))
    }


def rate(run_dir: Path, warmup: int) -> float:
    """Jets/s of the loop after `warmup` steps, from history.csv (cumulative jets, seconds per row)."""
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    timed = rows[warmup:]
    jets = int(timed[-1]["jets"]) - int(rows[warmup - 1]["jets"]) if warmup else int(timed[-1]["jets"])
    return jets / sum(float(r["time_s"]) for r in timed)


def time_ranks(n: int, args: argparse.Namespace, files: dict[str, list[str]], out: Path) -> float:
    train = {
        "gpus": n, "device": args.device, "batch_size": n * args.batch, "max_steps": args.steps,
        "warmup_steps": 1, "log_every": 1, "eval_every": 10**6, "eval_batches": 1, "checkpoint_every": 10**6,
        "progress": False, "threads": args.threads if args.device == "cpu" else 0, "shuffle_buffer": 1024,
        "sizes": {"part": {"preset": args.preset}},
    }  # fmt: skip
    config = {"dataset": "bench", "seed": 1, "train": train}
    kwargs = {"config": config, "model": "part", "files": files, "out_dir": str(out)}
    launch.run("jetfm.train.run:run_training", kwargs, config, "train", out)
    return rate(out, args.warmup)


def main() -> None:
    args = parse()
    if args.device == "cuda" and max(args.ranks) > torch.cuda.device_count():
        sys.exit(
            f"bench/ddp.py: {max(args.ranks)} ranks need as many GPUs; torch sees {torch.cuda.device_count()}"
        )
    if args.warmup >= args.steps:
        sys.exit("bench/ddp.py: --warmup must be below --steps")
    rates: dict[int, list[float]] = {n: [] for n in args.ranks}
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        files = make_data(Path(tmp) / "h5", args.jets)
        log = Path(tmp) / "runs.log"
        with log.open("w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:  # the runs' own output (progress lines of every rank) goes to the log, not the table
                for rep in range(args.repeats):
                    for n in args.ranks:
                        rates[n].append(time_ranks(n, args, files, Path(tmp) / f"r{n}-{rep}"))
            except Exception:
                fh.flush()
                print(log.read_text()[-4000:], file=sys.__stderr__)
                raise
    base = statistics.median(rates[min(args.ranks)]) / min(args.ranks)
    print(
        f"\nDDP scaling, {args.device}, ParT {args.preset}, {args.batch} jets/step/rank, {args.steps} steps "
        f"({args.warmup} warm-up), {args.repeats} alternation(s), torch {torch.__version__}"
    )
    print(f"{'ranks':>5}  {'global batch':>12}  {'jets/s':>9}  {'jets/s/rank':>11}  {'efficiency':>10}")
    for n in args.ranks:
        r = statistics.median(rates[n])
        print(f"{n:>5}  {n * args.batch:>12}  {r:>9.1f}  {r / n:>11.1f}  {r / (n * base):>10.2f}")


if __name__ == "__main__":
    main()
