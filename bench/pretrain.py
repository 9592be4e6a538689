"""Pretraining throughput: training-step jets/s of each pretraining objective divided by supervised jets/s,
same ParT backbone, same jets per batch, measured interleaved in one run (the machine is shared: rounds of
A/B/C/D steps, median per objective). The issue's bar: the decoder and the extra views should cost no more
than about 2x, i.e. ratios >= ~0.5.

Data: synthetic shards with JetClass-like multiplicities (tests/fixtures/train.py), nominal jets plus 4
re-simulation-like views per event. A step = forward + backward + AdamW step, fp32 on CPU (or the GPU).

    .venv/bin/python bench/pretrain.py [--size small] [--batch 64] [--rounds 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.train import make_jets, make_views, write_shard

from jetfm.models import count_parameters
from jetfm.pretrain.objectives import ContrastiveObjective, MaskedParticleObjective, MPMSettings, RS3LSettings
from jetfm.pretrain.vq import TokenizerObjective
from jetfm.train.config import TrainConfig
from jetfm.train.data import make_loader
from jetfm.train.loop import make_optimizer
from jetfm.train.objectives import Objective, Supervised


def make_data(root: Path, n_jets: int, n_events: int) -> list[str]:
    rng = np.random.default_rng(0)
    nominal = make_jets(n_jets, rng, 128, classes=tuple(range(10)))
    views = make_views(make_jets(n_events, rng, 128, classes=tuple(range(10))), 4, rng)
    views["event_id"] = np.repeat(np.arange(n_events, dtype=np.uint64) + np.uint64(10**6), 4)
    rows = {k: np.concatenate([nominal[k], views[k]]) for k in nominal}
    return [str(write_shard(root / "train.h5", rows, chunk=256))]


def tokenizer_checkpoint(root: Path, files: list[str], cfg: TrainConfig) -> Path:
    """A (random-init) tokenizer checkpoint: its cost, not its quality, is what mpm_tok's step pays."""
    from jetfm.train.loop import train

    obj = TokenizerObjective(512, 16, 128)
    train(cfg.replace(max_steps=1, eval_batches=1), files, files, None, root / "tok", objective=obj)
    return root / "tok" / "checkpoint.pt"


def batches(
    objective: Objective, files: list[str], cfg: TrainConfig, n: int
) -> list[dict[str, torch.Tensor]]:
    out: list[dict[str, torch.Tensor]] = []
    while len(out) < n:
        out += list(make_loader(objective.stream(files, cfg, 0, 1)))
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small", help="ParT preset (tiny | small | jetclass)")
    ap.add_argument("--batch", type=int, default=64, help="jets per batch (rs3l: batch / 4 events x 4 views)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per objective per round")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = make_data(root, 1024, 256)
        size = {"preset": args.size, "dropout": 0.0}
        cfg = TrainConfig(size=size, batch_size=args.batch, shuffle_buffer=1024, progress=False)
        tok = tokenizer_checkpoint(root, files, cfg)
        objectives = {
            "supervised": Supervised(),
            "mpm": MaskedParticleObjective(MPMSettings(use_views=True)),
            "mpm_tok": MaskedParticleObjective(MPMSettings(use_views=True), tok),
            "rs3l": ContrastiveObjective(RS3LSettings(events_per_batch=args.batch // 4)),
        }
        setups = {}
        for name, obj in objectives.items():
            stream = obj.stream(files, cfg, 0, 1)
            torch.manual_seed(0)
            model = obj.build(cfg, stream.meta).to(device)
            opt = make_optimizer(model, cfg, obj.param_groups(model, cfg))
            data = batches(obj, files, cfg, args.steps * (args.rounds + 1))
            setups[name] = (obj, model, opt, data)
        rates: dict[str, list[float]] = {k: [] for k in setups}
        for r in range(args.rounds + 1):  # round 0 warms up
            for name, (obj, model, opt, data) in setups.items():
                jets, t0 = 0, time.perf_counter()
                for batch in data[r * args.steps : (r + 1) * args.steps]:
                    loss = obj.loss(model, batch, device)
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    jets += len(batch["label"])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r:
                    rates[name].append(jets / (time.perf_counter() - t0))
        base = statistics.median(rates["supervised"])
        result = {
            "device": str(device), "size": args.size, "batch": args.batch, "threads": torch.get_num_threads(),
            "parameters": {k: count_parameters(s[1]) for k, s in setups.items()},
            "jets_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
            "ratio_to_supervised": {k: round(statistics.median(v) / base, 3) for k, v in rates.items()},
        }  # fmt: skip
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
