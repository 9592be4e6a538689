"""Training throughput on CPU: loader jets/s vs training-step jets/s, and jets/s + peak memory per model size.

Data: HDF5 shards in the preprocessing layout, padded to 128 particles, JetClass-like multiplicities (mean
~45, 30-60 typical). Each model size runs in its own subprocess so its peak RSS is its own. Baselines measured
in this same run: (1) the loader, (2) the JetClass-full ParT without per-batch padding trimming (P = 128),
(3) weaver-core's own ParticleTransformer (JetClass-full config) when it is importable: in its own subprocess
like the jetfm sizes and interleaved step by step with jetfm on the same batches. Without weaver-core the
script says so and prints no comparison (there is no stored reference number).

    .venv/bin/python bench/train.py [--steps 8] [--jets 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp; see jetfm/train/__init__.py

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.train import make_jets, write_shard

from jetfm.models import build_model, count_parameters, flops_per_jet
from jetfm.shards import max_particles
from jetfm.train.config import TrainConfig
from jetfm.train.data import H5JetStream
from jetfm.train.loop import make_optimizer

# weaver-core's own ParticleTransformer, measured in this run as the same-conditions baseline when importable
# (installed in the environment, or in WEAVER_PATH):
#   pip install --no-deps --target /tmp/weaver_pkg weaver-core      (its model file needs only torch)
WEAVER_PATH = os.environ.get("WEAVER_PATH", "/tmp/weaver_pkg")


def weaver_missing() -> str | None:
    """None when weaver-core's ParticleTransformer imports here (environment or WEAVER_PATH), else why not."""
    if WEAVER_PATH not in sys.path:
        sys.path.insert(0, WEAVER_PATH)
    try:
        from weaver.nn.model.ParticleTransformer import ParticleTransformer  # noqa: F401
    except Exception as exc:  # ImportError, or a weaver-core that does not load with this torch
        return f"{type(exc).__name__}: {exc}"
    return None


class WeaverParT(torch.nn.Module):
    """weaver-core ParticleTransformer, JetClass-full config, behind jetfm's call signature."""

    def __init__(self) -> None:
        super().__init__()
        if WEAVER_PATH not in sys.path:
            sys.path.insert(0, WEAVER_PATH)
        from weaver.nn.model.ParticleTransformer import ParticleTransformer

        self.net = ParticleTransformer(
            input_dim=17, num_classes=10, pair_input_dim=4, embed_dims=[128, 512, 128],
            pair_embed_dims=[64, 64, 64], num_heads=8, num_layers=8, num_cls_layers=2, fc_params=[],
        )  # fmt: skip

    def forward(self, x, v, mask, jet):  # type: ignore[no-untyped-def]
        return self.net(x.transpose(1, 2), v.transpose(1, 2), mask.unsqueeze(1).float())


SIZES = [
    ("mlp", {}),
    ("pfn", {"preset": "jetclass"}),
    ("part", {"preset": "tiny"}),
    ("part", {"preset": "small"}),
    ("part", {"preset": "jetclass"}),
]


def make_data(root: Path, n: int) -> list[str]:
    rng = np.random.default_rng(1)
    arrays = make_jets(n, rng, max_particles=128, classes=(0, 1, 4, 8))
    # Rescale multiplicities towards JetClass (fixture: ~17-27 per jet): repeat particles with jitter.
    # Chunks of 256 jets with gzip-1 + shuffle, as the preprocessing stage writes them.
    return [str(write_shard(root / "0000.h5", widen(arrays, rng), chunk=256, compression="gzip"))]


def widen(a: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, p, _ = a["part_features"].shape
    target = np.clip(rng.normal(45, 12, n).astype(int), 10, p)
    for i in range(n):
        k = int(a["part_mask"][i].sum())
        idx = np.r_[np.arange(k), rng.integers(0, k, max(target[i] - k, 0))][: target[i]]
        for key in ("part_features", "part_vectors"):
            src = a[key][i, idx] * rng.uniform(0.9, 1.1, (len(idx), 1)).astype(np.float32)
            a[key][i] = 0
            a[key][i, : len(idx)] = src
        a["part_mask"][i] = False
        a["part_mask"][i, : len(idx)] = True
    return a


def pad_to(v: torch.Tensor, p: int) -> torch.Tensor:
    """Zero-pad the particle axis (dim 1) back to p slots."""
    pad = (0, 0, 0, p - v.shape[1]) if v.dim() == 3 else (0, p - v.shape[1])
    return torch.nn.functional.pad(v, pad)


def loader_rate(files: list[str], batch: int) -> float:
    stream = H5JetStream(files, batch, seed=0, block_size=256, shuffle_buffer=4096)
    t = time.perf_counter()
    n = sum(len(b["label"]) for b in stream)
    return n / (time.perf_counter() - t)


def one(
    name: str, size: dict, files: list[str], steps: int, batch: int, trim: bool, bf16: bool = False
) -> dict:
    """Train `steps` timed steps (after 2 warm-up) in this process; jets/s and peak RSS."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    stream = H5JetStream(files, batch, seed=0, block_size=256, shuffle_buffer=4096)
    batches = []
    for b in stream:
        if not trim:  # the untrimmed baseline: every batch padded to the full 128 slots
            with __import__("h5py").File(files[0]) as f:
                p = max_particles(f)
            b = {k: pad_to(v, p) if k.startswith("part_") else v for k, v in b.items()}
        batches.append(b)
        if len(batches) == steps + 2:
            break
    model = WeaverParT() if name == "weaver" else build_model(name, 17, 8, 10, **size)
    opt = make_optimizer(model, TrainConfig())
    ours = model if name != "weaver" else build_model("part", 17, 8, 10)  # same FLOPs by construction
    model.train()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i, b in enumerate(batches):
        if i == 2:
            t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])
        loss = torch.nn.functional.cross_entropy(out.float(), b["label"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - t
    n_part = float(np.mean([b["part_mask"].sum(1).float().mean() for b in batches]))
    return {
        "model": name, "size": size.get("preset", "default"), "trim": trim, "bf16": bf16,
        "parameters": count_parameters(model),
        "gflops_fwd_per_jet": flops_per_jet(ours, n_part) / 1e9,
        "jets_per_s": steps * batch / dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_model_mb": rss0 / 1024, "mean_particles": n_part,
    }  # fmt: skip


def take(files: list[str], n: int, batch: int, bucket: bool) -> list[dict[str, torch.Tensor]]:
    """The loader's first `n` training batches (shuffle buffer 4096), with or without length bucketing."""
    stream = H5JetStream(files, batch, seed=0, block_size=256, shuffle_buffer=4096, bucket_by_length=bucket)
    out = []
    for b in stream:
        out.append(b)
        if len(out) == n:
            break
    return out


def interleaved(files: list[str], steps: int, batch: int) -> dict[str, tuple[float, float, float]]:
    """(jets/s, mean padded length P, mean real particles per jet) of jetfm ParT fp32 and bf16 autocast and
    weaver-core ParT fp32 (if installed), all on the same random (unbucketed) loader batches, as both
    trainers get by default, plus jetfm fp32 on length-bucketed batches; alternating step by step, so load
    from other jobs hits all alike (a fair ratio on a shared machine).

    weaver-core's SequenceTrimmer also drops particles beyond a random 90-102 % quantile of the batch's
    multiplicities while training (an augmentation); jetfm keeps every particle, so it does a bit more work.
    """
    torch.set_num_threads(2)
    bucketed, plain = take(files, steps + 2, batch, True), take(files, steps + 2, batch, False)
    contenders: dict[str, tuple[torch.nn.Module, bool, list]] = {}
    torch.manual_seed(0)
    contenders["jetfm fp32"] = (build_model("part", 17, 8, 10, preset="jetclass"), False, plain)
    contenders["jetfm fp32 bucketed"] = (build_model("part", 17, 8, 10, preset="jetclass"), False, bucketed)
    contenders["jetfm bf16"] = (build_model("part", 17, 8, 10, preset="jetclass"), True, plain)
    if weaver_missing() is None:
        contenders["weaver-core fp32"] = (WeaverParT(), False, plain)
    opts = {k: make_optimizer(m, TrainConfig()) for k, (m, _, _) in contenders.items()}
    spent = dict.fromkeys(contenders, 0.0)
    for i in range(steps + 2):
        for key, (model, bf16, batches) in contenders.items():
            b = batches[i]
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])
            torch.nn.functional.cross_entropy(out.float(), b["label"]).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opts[key].step()
            opts[key].zero_grad(set_to_none=True)
            if i >= 2:  # first two steps warm up allocators and weaver's trimmer
                spent[key] += time.perf_counter() - t
    return {
        k: (
            steps * batch / v,
            float(np.mean([b["part_mask"].shape[1] for b in contenders[k][2][2:]])),
            float(np.mean([b["part_mask"].sum(1).float().mean() for b in contenders[k][2][2:]])),
        )
        for k, v in spent.items()
    }


def report_ab(ab: dict[str, tuple[float, float, float]]) -> None:
    print("\ninterleaved (JetClass-full ParT, batch 64, AdamW, 2 threads):")
    for key, (rate, p, n) in ab.items():
        print(f"  {key:>22}: {rate:6.1f} jets/s  (mean padded P = {p:.0f}, real particles/jet = {n:.1f})")
    if "weaver-core fp32" in ab:
        w = ab["weaver-core fp32"][0]
        for key in ab:
            if key.startswith("jetfm"):
                print(f"{key} / weaver-core fp32 (interleaved): {ab[key][0] / w:.2f}x (fp32 target >= 1.5x)")
    else:
        print(f"  weaver-core: not importable, not measured ({weaver_missing()})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--jets", type=int, default=4096)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument(
        "--ab-steps", type=int, default=12, help="steps of the interleaved jetfm/weaver comparison"
    )
    ap.add_argument("--ab-only", action="store_true", help="only the interleaved jetfm/weaver comparison")
    args = ap.parse_args()
    if args.ab_only:
        with tempfile.TemporaryDirectory() as tmp:
            report_ab(interleaved(make_data(Path(tmp), args.jets), args.ab_steps, args.batch))
        return
    if args.one:
        spec = json.loads(args.one)
        r = one(spec["name"], spec["size"], spec["files"], args.steps, args.batch, spec["trim"], spec["bf16"])
        print(json.dumps(r))
        return
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_data(Path(tmp), args.jets)
        load = loader_rate(files, args.batch)
        print(
            f"loader: {load:,.0f} jets/s (1 process, no workers, batch {args.batch}, trim + shuffle buffer)"
        )
        rows = []
        # Every size trimmed in fp32; then the JetClass ParT untrimmed (baseline) and with bf16 autocast.
        runs = [*((s, True, False) for s in SIZES), (SIZES[-1], False, False), (SIZES[-1], True, True)]
        if weaver_missing() is None:
            runs.append((("weaver", {"preset": "jetclass"}), True, False))
        for (name, size), trim, bf16 in runs:
            spec = json.dumps({"name": name, "size": size, "files": files, "trim": trim, "bf16": bf16})
            cmd = [
                sys.executable,
                __file__,
                "--one",
                spec,
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
            ]
            r = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            rows.append(r)
            print(
                f"{r['model']:>4} {r['size']:>8} trim={r['trim']!s:5} {'bf16' if r['bf16'] else 'fp32'} "
                f"params {r['parameters']:>9,} "
                f"fwd {r['gflops_fwd_per_jet'] * 1e3:7.1f} MFLOP/jet  {r['jets_per_s']:8.1f} jets/s  "
                f"peak RSS {r['peak_rss_mb']:6.0f} MB  (<P> = {r['mean_particles']:.1f})"
            )
        ab = interleaved(files, args.ab_steps, args.batch)
    report_ab(ab)
    full = next(r for r in rows if r["size"] == "jetclass" and r["model"] == "part" and r["trim"])
    untrimmed, bf16_row = rows[len(SIZES)], rows[len(SIZES) + 1]
    print(f"\nloader / JetClass-ParT training: {load / full['jets_per_s']:.1f}x (target >= 10x)")
    print(f"JetClass-ParT trimmed / untrimmed (P=128): {full['jets_per_s'] / untrimmed['jets_per_s']:.2f}x")
    bf16_gain = bf16_row["jets_per_s"] / full["jets_per_s"]
    print(f"JetClass-ParT bf16 autocast / fp32 on this CPU (has avx512_bf16): {bf16_gain:.2f}x")
    weaver = next((r for r in rows if r["model"] == "weaver"), None)
    missing = weaver_missing()
    if weaver is not None:
        ratio = full["jets_per_s"] / weaver["jets_per_s"]
        print(
            f"JetClass-ParT vs weaver-core ParT, separate processes in this run: {full['jets_per_s']:.1f} vs "
            f"{weaver['jets_per_s']:.1f} jets/s = {ratio:.2f}x (target >= 1.5x; interleaved ratio above)"
        )
    else:
        print(
            f"weaver-core: NOT measured in this run ({missing}); no jetfm / weaver-core ratio. "
            f"Install it with `pip install --no-deps --target {WEAVER_PATH} weaver-core` "
            "(or set WEAVER_PATH) and rerun."
        )
    print("(the 2 cores are shared with other jobs while this runs: numbers are lower bounds)")


if __name__ == "__main__":
    main()
