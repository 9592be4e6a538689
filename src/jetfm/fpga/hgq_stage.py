"""The `hgq` route's steps (`routes.HGQRoute`: attention, hgq_mlp), where they differ from the torch cores'.

- calibration after training (`calibrate_student`): HGQ2's activation quantisers wrap (WRAP overflow); their
  integer bits come from the ranges on the training jets and are saved, with the EBOPs at those widths, as
  `<out>/qat/calibrated.pt` (the loop's checkpoint stays as written). Test jets outside those ranges wrap in
  Keras and firmware alike.
- conversion (`routes.HGQRoute.convert`, with `NOTES`): hls4ml's Keras-3 frontend (not the PyTorch one),
  emulation of the whole test split against the calibrated HGQ2 model's own inference output, bit for bit.
- no pruning (HGQ2 layers are not torch Linear/Conv1d), so the "qat" phase continues the HGQ2 training of
  the first phase (which already quantises: "float_student" is that first, already quantised, run).
- Verilog from da4ml's own HGQ2 tracer (`da4ml.converter.trace_model`: it replays the Keras layers, attention
  and table softmax included) instead of `rtl.trace_core` (torch cores); the same `RTLStudent` writes,
  verilates and simulates it, fed the inputs as the first layer's input quantiser stores them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetfm.atomic import atomic_path

CALIBRATED = "calibrated.pt"
NOTES = {  # emulation.json keys that only this route has (the student's own `notes` join "notes")
    "reference": "the calibrated HGQ2 model's own inference (Keras, torch backend) on the same inputs",
    "frontend": "hls4ml Keras-3 (HGQ2 bit-exact types)",
    "notes": {
        "float_student": "the first training phase: already HGQ2-quantised (HGQ2 quantises from step 0)",
        "sparsity": "no magnitude pruning (fpga.compress.sparsity applies to the torch-core students)",
    },
}
CALIBRATION_JETS = 200_000  # enough for the ranges; bounds the time on a large training split


def calibrate_student(student: Any, train_files: list[str], cfg: Any, out: Path) -> int:
    """trace_minmax on the firmware inputs of the first CALIBRATION_JETS training jets (read in order, no
    more than that); the calibrated state and its EBOPs to `out`; returns the jets used."""
    from jetfm.train.data import H5JetStream, make_loader

    stream = H5JetStream(train_files, cfg.eval_batch_size, shuffle=False, block_size=cfg.block_size,
                         nominal_only=cfg.nominal_only, drop_last=False)  # fmt: skip
    parts, n = [], 0
    with torch.no_grad():
        for b in make_loader(stream):
            feats = student.features(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])
            parts.append(feats.numpy())
            n += len(parts[-1])
            if n >= CALIBRATION_JETS:
                break
    x = np.concatenate(parts)[:CALIBRATION_JETS]
    ebops = student.calibrate(x)
    state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    with atomic_path(out) as tmp:
        torch.save({"model": state, "calibration_jets": len(x), "ebops": ebops}, tmp)
    return len(x)


def load_calibrated(student: Any, qat_dir: Path) -> dict[str, Any]:
    """The calibrated state into `student`; the number of calibration jets and the EBOPs (None when the
    file predates them)."""
    saved = torch.load(qat_dir / CALIBRATED, weights_only=True)
    student.load_state_dict(saved["model"])
    return {"calibration_jets": int(saved["calibration_jets"]), "ebops": saved.get("ebops")}


def run_hgq_rtl(
    student: Any, out_dir: str | Path, clock_period: float, adders_per_stage: float, part: str,
    simulate: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray | None]:  # fmt: skip
    """`rtl.run_rtl` for the HGQ2 student: Verilog of its da4ml trace and, given unquantised inputs
    `simulate` and Verilator, its RTL simulation. Returns (summary, outputs or None)."""
    from jetfm.fpga.rtl import write_and_simulate

    t0 = time.perf_counter()
    try:
        from da4ml.converter import trace_model
        from da4ml.trace import FixedVariableArrayInput, comb_trace
    except ImportError:
        return {"status": "skipped", "reason": "da4ml is not installed (pip install 'hls4ml[da]')"}, None
    x = FixedVariableArrayInput(student.input_shape).quantize(*student.input_kif())
    x, y = trace_model(student.keras_model, inputs=(x,))
    route = "da4ml trace of the HGQ2 model -> pipelined Verilog (constant products as adder graphs)"
    # the input port carries the features as the first layer's input quantiser stores them
    words = None if simulate is None else student.quantise_input(simulate).reshape(len(simulate), -1)
    return write_and_simulate(
        comb_trace(x, y), route, t0, out_dir, clock_period, adders_per_stage, part, words
    )
