"""GPU training throughput and model-FLOPs utilisation (MFU) of the JetClass-full ParT, bf16 autocast vs fp32.

The issue's GPU target: bf16 MFU >= 15 %. MFU = 3 x forward model FLOPs per jet (`flops_per_jet` at the
batches' mean real multiplicity: linear layers and attention matmuls) x jets/s / the device's dense bf16 peak.
Baselines in the same run: jetfm fp32 (TF32 matmuls) and, when installed, weaver-core's ParT under the same
bf16 autocast. Batches are moved to the device first, so the number is the training step alone (the loader's
own rate is in `bench/train.py`). Without a CUDA device this says so and measures nothing.

    .venv/bin/python bench/train_gpu.py [--batch 512] [--steps 30] [--compile] [--peak-tflops 989]

`--device cpu --peak-tflops X` runs the same code on the CPU (a smoke test of this script, not a number).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import WEAVER_PATH, WeaverParT, make_data, take  # bench/train.py: same data, same reference

from jetfm.models import build_model, flops_per_jet
from jetfm.train.config import TrainConfig
from jetfm.train.loop import make_optimizer

# Dense bf16 tensor-core peaks (no sparsity) from the vendors' data sheets, in TFLOP/s.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0,
                    "H100": 756.0, "A100": 312.0, "L40S": 362.1, "L4": 121.0}  # fmt: skip


def peak_tflops(name: str, override: float | None) -> float:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():  # most specific names first
        if key in name:
            return value
    raise SystemExit(f"unknown GPU {name!r}: pass its dense bf16 peak with --peak-tflops")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(
    model: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    steps: int,
    bf16: bool,
    device: torch.device,
) -> float:
    """Jets/s over `steps` timed training steps after 3 warm-up steps (compilation, allocator, cuBLAS)."""
    opt = make_optimizer(model, TrainConfig())
    model.train()
    n = 0
    for i in range(steps + 3):
        if i == 3:
            sync(device)
            t = time.perf_counter()
        b = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])
        torch.nn.functional.cross_entropy(out.float(), b["label"]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        n += len(b["label"]) if i >= 3 else 0
    sync(device)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--jets", type=int, default=16384)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd jetfm bf16")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this GPU")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: GPU bf16 throughput and MFU not measured (run this on a GPU node)")
        return
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, args.peak_tflops) * 1e12
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory() as tmp:
        cpu_batches = take(make_data(Path(tmp), args.jets), args.jets // args.batch, args.batch, False)
    batches = [{k: v.to(device) for k, v in b.items()} for b in cpu_batches]
    mean_n = float(np.mean([b["part_mask"].sum(1).float().mean().item() for b in batches]))
    torch.manual_seed(0)
    fwd = flops_per_jet(build_model("part", 17, 8, 10, preset="jetclass"), mean_n)
    runs = [("jetfm bf16", False, True), ("jetfm fp32 (tf32)", False, False)]
    if args.compile:
        runs.append(("jetfm bf16 compiled", True, True))
    if Path(WEAVER_PATH, "weaver").is_dir():
        runs.append(("weaver-core bf16", False, True))
    print(f"{name}, dense bf16 peak {peak / 1e12:.0f} TFLOP/s, batch {args.batch}, <n> = {mean_n:.1f}, "
          f"{3 * fwd / 1e9:.3f} GFLOP per jet per training step")  # fmt: skip
    rates = {}
    for label, compiled, bf16 in runs:
        torch.manual_seed(0)
        model = (
            WeaverParT() if label.startswith("weaver") else build_model("part", 17, 8, 10, preset="jetclass")
        )
        model = model.to(device)
        rates[label] = step_rate(
            torch.compile(model) if compiled else model, batches, args.steps, bf16, device
        )
        mfu = 3 * fwd * rates[label] / peak
        memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        print(
            f"  {label:>20}: {rates[label]:9.0f} jets/s  MFU {100 * mfu:5.1f} %  peak memory {memory:.1f} GiB"
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
    best = max(v for k, v in rates.items() if k.startswith("jetfm bf16"))
    print(f"jetfm bf16 MFU: {100 * 3 * fwd * best / peak:.1f} % (target >= 15 %)")
    if "weaver-core bf16" in rates:
        print(f"jetfm bf16 / weaver-core bf16: {best / rates['weaver-core bf16']:.2f}x")


if __name__ == "__main__":
    main()
