"""Student routes: how a kind of student is compressed, restored, converted, emulated and traced to Verilog,
looked up once per student (`route_of`, like hls4ml's registry of layer handlers) instead of branching on
the student's name in every step of `stage.py`.

- `torch_core` (jet_mlp, deepsets): hand-written fixed-point quantisers and magnitude pruning on the torch
  `core` (`compress.py`), hls4ml's PyTorch frontend with exact accumulator types (`convert.py`), Verilog
  from `rtl.trace_core`.
- `hgq` (attention, hgq_mlp): HGQ2 quantises itself (no torch compression), calibration of its wrapping
  quantisers after training, hls4ml's Keras-3 frontend, Verilog from da4ml's HGQ2 tracer (`hgq_stage.py`).

Which kinds take which route: `kinds.KINDS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jetfm.fpga import hgq_stage
from jetfm.fpga.compress import CompressSpec, Quantize, apply_compression, export_plain, sparsity
from jetfm.fpga.convert import (
    HLSSettings,
    agreement,
    convert,
    emulate,
    exact_types,
    first_disagreement,
    qat_forward,
    quantised_logits,
)
from jetfm.fpga.kinds import KINDS, kind_of
from jetfm.fpga.opcount import operation_counts
from jetfm.fpga.rtl import OpenFlowSettings, run_rtl
from jetfm.train.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Conversion:
    """A route's conversion + emulation of the whole test split."""

    reference: np.ndarray  # the quantised model's own logits: what the emulation must equal bit for bit
    emulated: np.ndarray
    rtl_inputs: np.ndarray  # what the RTL simulation is fed
    compile_s: float
    jets_per_s: float
    extras: dict[str, Any]  # emulation.json keys only this route has


@dataclasses.dataclass(frozen=True)
class Route:
    """One route's labels; its steps are the subclass's methods."""

    name: str
    quantiser: str  # how the weights and activations are quantised (the Pareto table's column)
    frontend: str  # hls4ml's frontend
    second_phase: str  # what the "qat" training phase does

    def compression(self, spec: CompressSpec) -> CompressSpec | None:
        """The torch compression the training's second phase applies (None: none)."""
        raise NotImplementedError

    def finish_training(
        self, load: Callable[[], nn.Module], train_files: list[str], cfg: TrainConfig, qat_dir: Path
    ) -> str | None:
        """What follows both training phases (`load` gives the trained student); a log line, or None."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, compress: CompressSpec | None) -> None:
        """Make a fresh student take a saved state (its quantisers and masks when `compress`)."""
        raise NotImplementedError

    def restore(self, model: nn.Module, qat_dir: Path) -> dict[str, Any]:
        """What the firmware model needs beyond the loop's checkpoint; emulation.json keys it adds."""
        raise NotImplementedError

    def hls_model(
        self, qat: nn.Module, spec: CompressSpec, hls: HLSSettings, out_dir: Path, compile: bool = True
    ) -> tuple[Any, float]:
        """hls4ml model of the trained student, written to out_dir, compiled unless not `compile`."""
        raise NotImplementedError

    def convert(
        self, qat: nn.Module, raw: np.ndarray, spec: CompressSpec, hls: HLSSettings, out_dir: Path
    ) -> Conversion:
        """hls4ml conversion, compile and emulation of the unquantised firmware inputs `raw`."""
        raise NotImplementedError

    def rtl(
        self, qat: nn.Module, spec: CompressSpec, hls: HLSSettings, flow: OpenFlowSettings, out: Path,
        simulate: np.ndarray | None = None,
    ) -> tuple[dict[str, Any], np.ndarray | None]:  # fmt: skip
        """Verilog of the student and, given inputs `simulate`, its Verilator simulation (`rtl.run_rtl`)."""
        raise NotImplementedError


class TorchCoreRoute(Route):
    """Hand-written fixed point + pruning on a torch `core`, hls4ml's PyTorch frontend, `rtl.trace_core`."""

    def compression(self, spec: CompressSpec) -> CompressSpec | None:
        return spec

    def finish_training(
        self, load: Callable[[], nn.Module], train_files: list[str], cfg: TrainConfig, qat_dir: Path
    ) -> str | None:
        return None

    def prepare(self, model: nn.Module, compress: CompressSpec | None) -> None:
        if compress is not None:
            apply_compression(model.core, compress)
            model.input_quant = Quantize(compress.types()["input"])

    def restore(self, model: nn.Module, qat_dir: Path) -> dict[str, Any]:
        return {}

    def hls_model(
        self, qat: nn.Module, spec: CompressSpec, hls: HLSSettings, out_dir: Path, compile: bool = True
    ) -> tuple[Any, float]:
        return convert(qat.core, qat.input_shape, spec, hls, out_dir, compile=compile)

    def convert(
        self, qat: nn.Module, raw: np.ndarray, spec: CompressSpec, hls: HLSSettings, out_dir: Path
    ) -> Conversion:
        x = qat.input_quant.t.quantize(torch.from_numpy(raw)).numpy()
        exported = quantised_logits(qat.core, x)
        reference = qat_forward(qat, raw)
        model, compile_s = self.hls_model(qat, spec, hls, out_dir)
        emulated, jets_per_s = emulate(model, raw)
        disagree = np.flatnonzero(np.abs(emulated - reference).max(1) > 0)  # any output bit, argmax or not
        extras = {
            "reference": "the QAT model's own forward, float64, on the unquantised inputs of the emulation",
            "exported_model_vs_qat": agreement(exported, reference),
            "first_disagreeing_layer": first_disagreement(model, qat.core, x[disagree[:16]])
            if disagree.size
            else None,
            "sparsity": sparsity(qat.core),
            "operations": operation_counts(model),
            "layer_types": {str(k): v for k, v in exact_types(export_plain(qat.core), spec).items()},
            "precisions": {k: v.hls() for k, v in spec.types().items()},
        }
        return Conversion(reference, emulated, x, compile_s, jets_per_s, extras)

    def rtl(
        self, qat: nn.Module, spec: CompressSpec, hls: HLSSettings, flow: OpenFlowSettings, out: Path,
        simulate: np.ndarray | None = None,
    ) -> tuple[dict[str, Any], np.ndarray | None]:  # fmt: skip
        return run_rtl(qat.core, qat.input_shape, spec, out, hls.clock_period, flow.adders_per_stage,
                       hls.part, simulate=simulate)  # fmt: skip


class HGQRoute(Route):
    """HGQ2 (Keras 3) students: no torch compression, calibration, Keras-3 frontend, da4ml's HGQ2 tracer."""

    def compression(self, spec: CompressSpec) -> CompressSpec | None:
        return None  # HGQ2 quantises from step 0: the second phase continues its training

    def finish_training(
        self, load: Callable[[], nn.Module], train_files: list[str], cfg: TrainConfig, qat_dir: Path
    ) -> str | None:
        calibrated = qat_dir / hgq_stage.CALIBRATED  # integer bits of HGQ2's wrapping quantisers
        n = hgq_stage.calibrate_student(load(), train_files, cfg, calibrated)
        return f"calibrated on {n} training jets -> {calibrated}"

    def prepare(self, model: nn.Module, compress: CompressSpec | None) -> None:
        """Nothing: HGQ2's quantisers are part of the model's state."""

    def restore(self, model: nn.Module, qat_dir: Path) -> dict[str, Any]:
        return hgq_stage.load_calibrated(model, qat_dir)

    def hls_model(
        self, qat: nn.Module, spec: CompressSpec, hls: HLSSettings, out_dir: Path, compile: bool = True
    ) -> tuple[Any, float]:
        from jetfm.fpga.hgq import convert_hgq

        return convert_hgq(qat, hls.backend, hls.part, hls.clock_period, hls.reuse_factor, hls.strategy,
                           hls.io_type, out_dir, compile=compile)  # fmt: skip

    def convert(
        self, qat: nn.Module, raw: np.ndarray, spec: CompressSpec, hls: HLSSettings, out_dir: Path
    ) -> Conversion:
        reference = qat.logits(raw)  # float32 values: the features are float32
        model, compile_s = self.hls_model(qat, spec, hls, out_dir)
        emulated, jets_per_s = emulate(model, raw)
        extras = {
            **hgq_stage.NOTES,
            "notes": {**hgq_stage.NOTES["notes"], **qat.notes},
            "first_disagreeing_layer": None,
            "sparsity": {},
            "operations": {**operation_counts(model), "counted": qat.counted},
        }
        return Conversion(reference, emulated, raw, compile_s, jets_per_s, extras)

    def rtl(
        self, qat: nn.Module, spec: CompressSpec, hls: HLSSettings, flow: OpenFlowSettings, out: Path,
        simulate: np.ndarray | None = None,
    ) -> tuple[dict[str, Any], np.ndarray | None]:  # fmt: skip
        return hgq_stage.run_hgq_rtl(qat, out, hls.clock_period, flow.adders_per_stage, hls.part, simulate)


ROUTES: dict[str, Route] = {
    "torch_core": TorchCoreRoute("torch_core", "hand-written fixed point", "PyTorch", "pruning + QAT"),
    "hgq": HGQRoute("hgq", "HGQ2", "Keras-3/HGQ2", "HGQ2 QAT continued (no pruning)"),
}


def route_of(name: str, size: dict[str, Any] | None = None) -> Route:
    """The route of student `name` (`size`: its `fpga.sizes` entry, which may name its kind)."""
    return ROUTES[KINDS[kind_of(name, size)]]
