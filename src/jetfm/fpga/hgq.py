"""What every HGQ2 student shares: a Keras 3 model (torch backend) wrapped as a torch student, and its
hls4ml conversion.

Keras variables are torch Parameters on this backend; the wrapper lists them in a fixed order (its
state_dict keys do not depend on Keras's global layer-name counters), so the project's one training loop
trains and checkpoints it. HGQ2 adds its own losses (bit-width L1, EBOPs x `ebops_beta`) per call
(`regularisation`); activations wrap (WRAP overflow), their integer bits set by `calibrate` (HGQ2's
`trace_minmax`) on training jets after training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

os.environ.setdefault("KERAS_BACKEND", "torch")

MHA_KEY = "hgq.layers.attn.mha.QMultiHeadAttention"  # hgq2 0.2 moved the class here
MHA_KEY_HLS4ML = "hgq.layers.multi_head_attention.QMultiHeadAttention"  # where hls4ml 1.3 looks for it


def keras_module() -> Any:
    """Keras, refusing any backend but torch (the wrapper hands Keras variables to torch optimisers)."""
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"the HGQ2 students need KERAS_BACKEND=torch, got {keras.backend.backend()}")
    return keras


class HGQStudent(nn.Module):
    """Student interface (`input_shape`, registry forward, `regularisation`, `calibrate`, `logits`) around an
    HGQ2 model; a subclass sets up nn.Module, provides `features`, and calls `_wrap`."""

    input_layer = ""  # the layer whose input quantiser stores the firmware input
    counted = "every layer"  # what `opcount.operation_counts` sees of this student
    notes: ClassVar[dict[str, str]] = {}  # emulation.json notes of this student only

    def _wrap(self, model: Any, input_shape: tuple[int, ...]) -> None:
        self.input_shape = input_shape
        self.__dict__["keras_model"] = model  # not a submodule: its parameter names carry global counters
        self.variables = nn.ParameterList([v.value for v in model.variables])  # the same tensors, in order
        self.core = nn.Identity()  # no torch layers to prune or quantise (HGQ2 quantises itself)
        self.input_quant: nn.Module = nn.Identity()

    def forward(self, part_features, part_vectors, part_mask, jet_features=None):  # type: ignore[no-untyped-def]
        x = self.features(part_features, part_vectors, part_mask, jet_features)
        return self.keras_model(x.float(), training=self.training)

    def regularisation(self) -> torch.Tensor:
        """HGQ2's losses of the last training call: EBOPs x beta (0 unless `ebops_beta`) and bit-width L1."""
        losses = [torch.as_tensor(v).float().sum() for v in self.keras_model.losses]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    @torch.no_grad()
    def calibrate(self, x: np.ndarray) -> int:
        """Integer bits of every WRAP quantiser from the ranges on `x` (HGQ2's `trace_minmax`); returns the
        model's EBOPs at those bit widths."""
        from hgq.utils import trace_minmax

        return int(trace_minmax(self.keras_model, np.asarray(x, dtype=np.float32), batch_size=4096))

    def input_kif(self) -> tuple[int, int, int]:
        """(keep-sign, integer, fraction) bits of the firmware input: the widest of the input quantiser's."""
        kif = self._input_quantiser().quantizer.kif
        k, i, f = (int(torch.as_tensor(v).detach().max()) for v in kif)
        return k, i, f

    @torch.no_grad()
    def quantise_input(self, x: np.ndarray) -> np.ndarray:
        """`x` as the input quantiser stores it (what the Verilog's input port carries), float64."""
        q = self._input_quantiser()(torch.from_numpy(np.asarray(x, dtype=np.float32)), training=False)
        return q.detach().cpu().double().numpy()

    def _input_quantiser(self) -> Any:
        return self.keras_model.get_layer(self.input_layer).iq

    @torch.no_grad()
    def logits(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """The quantised model's inference output (float32, exact: every value lies on its fixed-point
        grid) as float64."""
        x32 = torch.from_numpy(np.asarray(x, dtype=np.float32))
        out = [self.keras_model(x32[i : i + batch], training=False) for i in range(0, len(x), batch)]
        return torch.cat([o.detach().cpu() for o in out]).double().numpy()


def register_mha_handler() -> None:
    """hls4ml 1.3 registers its HGQ2 attention handler under the class's old module path; hgq2 0.2 moved
    the class (`hgq.layers.attn.mha`), so the converter would fall back to da4ml and fail. Same handler."""
    from hls4ml.converters.keras_v3 import layer_handlers

    if MHA_KEY not in layer_handlers and MHA_KEY_HLS4ML in layer_handlers:
        layer_handlers[MHA_KEY] = layer_handlers[MHA_KEY_HLS4ML]


def convert_hgq(
    student: HGQStudent, backend: str, part: str, clock_period: float, reuse_factor: int,
    strategy: str, io_type: str, out_dir: str | Path, compile: bool = True,
) -> tuple[Any, float]:  # fmt: skip
    """hls4ml model of the calibrated HGQ2 model (Keras-3 frontend, HGQ2 bit-exact types), written to
    out_dir and (unless not `compile`) compiled; returns (model, compile seconds)."""
    from hls4ml.converters import convert_from_keras_model

    from jetfm.fpga.convert import compile_or_write

    if io_type != "io_parallel":
        raise ValueError(f"the HGQ2 students convert with io_parallel only (HGQ2 einsum), not {io_type}")
    register_mha_handler()
    # HGQ2's bit-exact pass sets every type; the default precision is a placeholder it overrides
    config = {"Model": {"Precision": "ap_fixed<1,0>", "ReuseFactor": reuse_factor, "Strategy": strategy}}
    model = convert_from_keras_model(
        student.keras_model, output_dir=str(out_dir), backend=backend, part=part, clock_period=clock_period,
        io_type=io_type, hls_config=config,
    )  # fmt: skip
    return compile_or_write(model, compile)
