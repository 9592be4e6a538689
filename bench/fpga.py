"""FPGA stage costs: hls4ml write + g++ compile time and C++ emulation jets/s per student (default sizes).

Students are built with random (seeded) weights, compressed with the default spec (50 % sparsity, 8-bit
weights): compile time and emulation speed do not depend on what the weights learned. The emulation is
hls4ml's ctypes `predict` over a (N, ...) array; PyTorch's float64 quantised model on the same jets is the
same-run baseline (both compute bit-identical logits, checked here too).

    .venv/bin/python bench/fpga.py [--jets 2000] [--students jet_mlp deepsets]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jetfm.config import load_config
from jetfm.fpga.compress import CompressSpec, Quantize, apply_compression, prune_to
from jetfm.fpga.convert import HLSSettings, convert, emulate, quantised_logits
from jetfm.fpga.opcount import operation_counts
from jetfm.fpga.students import build_student

ROOT = Path(__file__).resolve().parents[1]


def bench_student(name: str, config: dict, jets: int, workdir: Path) -> dict:
    fpga = config["fpga"]
    spec, hls = CompressSpec.from_dict(fpga["compress"]), HLSSettings.from_dict(fpga["hls"])
    torch.manual_seed(0)
    student = build_student(name, 17, 10, 10, fpga["sizes"].get(name, {}))
    apply_compression(student.core, spec)
    student.input_quant = Quantize(spec.types()["input"])
    prune_to(student.core, spec.sparsity)
    t0 = time.perf_counter()
    model, compile_s = convert(student.core, student.input_shape, spec, hls, workdir / name)
    total_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    x = (
        spec.types()["input"]
        .quantize(torch.from_numpy(rng.normal(0, 2, (jets, *student.input_shape))))
        .numpy()
    )
    emulated, jets_per_s = emulate(model, x)
    t1 = time.perf_counter()
    reference = quantised_logits(student.core, x)
    torch_jets_per_s = jets / (time.perf_counter() - t1)
    ops = operation_counts(model)["totals"]
    return {
        "student": name,
        "convert_and_compile_s": round(total_s, 2),
        "compile_s": round(compile_s, 2),
        "emulation_jets_per_s": round(jets_per_s, 1),
        "pytorch_float64_jets_per_s": round(torch_jets_per_s, 1),
        "bit_exact": bool(np.array_equal(emulated, reference)),
        "multiplications": ops["multiplications"],
        "nonzero_weights": ops["nonzero_weights"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=2000)
    parser.add_argument("--students", nargs="+", default=["jet_mlp", "deepsets"])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.students:
            print(json.dumps(bench_student(name, config, args.jets, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
