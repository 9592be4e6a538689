"""The attention student: an HGQ2 (Keras 3, torch backend) model that hls4ml converts bit-exactly.

Why HGQ2 and not a torch core: hls4ml 1.3's PyTorch frontend has no attention layer; its Keras-3 frontend
converts HGQ2's `QMultiHeadAttention` (no masks) with HGQ2's own table softmax, and HGQ2's bit-exact pass
gives every intermediate the exact type, so the C++ emulation equals the Keras model bit for bit (no
lookup-table softmax of hls4ml's own: that one can flip the argmax, hls4ml#1443/#1512).

The model, on the leading `particles` particles (pT-ordered, zero-padded), input (particles, F + 1):
  e = ReLU(x W_e)                 per-particle embedding, no bias, the last channel is the "real particle"
                                  flag (as in Deep Sets): a padded slot (all zeros) has e = 0 exactly
  a = MHA(e, e)                   one block, `heads` heads, no biases (padded slots: K = V = 0)
  g = sum_p a_p * e_p             gated sum pooling (QEinsum "bpd,bpd->bd"): padded rows have e = 0, so
                                  their (non-zero) attention outputs drop out exactly
  logits = head MLP(g)
Padded slots without a mask: each is a key of score exactly 0 and value 0, i.e. it adds exp(0 - max) to
every softmax denominator and nothing to the numerator (an "attention sink" per empty slot). The output
depends on the padding only through the number of empty slots, which the real particles fix; where the
empty slots sit does not matter (the model is permutation invariant over slots).

Keras variables are torch Parameters on this backend; the torch wrapper lists them in a fixed order (its
state_dict keys do not depend on Keras's global layer-name counters), so the project's one training loop
trains and checkpoints it. Bit widths are per tensor; integer bits of activations (WRAP) are set by
`calibrate` (HGQ2's `trace_minmax`) on training jets after training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jetfm.fpga.particles import leading_particles

os.environ.setdefault("KERAS_BACKEND", "torch")

MHA_KEY = "hgq.layers.attn.mha.QMultiHeadAttention"  # hgq2 0.2 moved the class here
MHA_KEY_HLS4ML = "hgq.layers.multi_head_attention.QMultiHeadAttention"  # where hls4ml 1.3 looks for it


def _keras() -> Any:
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"the attention student needs KERAS_BACKEND=torch, got {keras.backend.backend()}")
    return keras


def build_keras_model(
    num_features: int, num_classes: int, particles: int, embed_dim: int, heads: int, key_dim: int,
    head_dims: tuple[int, ...], weight_bits: int, fraction_bits: int, ebops_beta: float,
) -> Any:  # fmt: skip
    """The HGQ2 functional model (input (particles, num_features + 1), output logits)."""
    keras = _keras()
    from hgq.config import LayerConfigScope, QuantizerConfigScope
    from hgq.layers import QDense, QEinsum, QEinsumDense, QMultiHeadAttention

    per_tensor = {"homogeneous_axis": None, "heterogeneous_axis": ()}  # one type per tensor
    with (
        QuantizerConfigScope(place=("weight", "bias"), b0=weight_bits, **per_tensor),
        QuantizerConfigScope(place="datalane", f0=fraction_bits, **per_tensor),
        LayerConfigScope(beta0=ebops_beta, enable_ebops=True),
    ):
        x = keras.Input((particles, num_features + 1), name="particles")
        embed = QEinsumDense("bpf,fd->bpd", (particles, embed_dim), activation="relu", name="embed")
        e = embed(x)
        a = QMultiHeadAttention(heads, key_dim, use_bias=False, name="mha")(e, e)
        h = QEinsum("bpd,bpd->bd", name="gated_sum")([a, e])
        for i, d in enumerate(head_dims):
            h = QDense(d, activation="relu", name=f"head{i}")(h)
        out = QDense(num_classes, name="logits")(h)
    return keras.Model(x, out, name="attention_student")


class AttentionStudent(nn.Module):
    """Student interface (`features`, `input_shape`, registry forward) around the HGQ2 model."""

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        particles: int = 16,
        embed_dim: int = 8,
        heads: int = 2,
        key_dim: int = 4,
        head_dims: tuple[int, ...] = (16,),
        weight_bits: int = 8,
        fraction_bits: int = 6,
        ebops_beta: float = 0.0,
    ) -> None:
        super().__init__()
        self.particles = particles
        self.input_shape = (particles, num_features + 1)
        model = build_keras_model(num_features, num_classes, particles, embed_dim, heads, key_dim,
                                  tuple(head_dims), weight_bits, fraction_bits, ebops_beta)  # fmt: skip
        self.__dict__["keras_model"] = model  # not a submodule: its parameter names carry global counters
        self.variables = nn.ParameterList([v.value for v in model.variables])  # the same tensors, in order
        self.core = nn.Identity()  # no torch layers to prune or quantise (HGQ2 quantises itself)
        self.input_quant: nn.Module = nn.Identity()

    def features(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor | None,
        part_mask: torch.Tensor,
        jet_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, particles, F + 1): leading particles' features and a 1 for real ones, zeros for padding."""
        return leading_particles(part_features, part_mask, self.particles)

    def forward(self, part_features, part_vectors, part_mask, jet_features=None):  # type: ignore[no-untyped-def]
        x = self.features(part_features, part_vectors, part_mask, jet_features)
        return self.keras_model(x.float(), training=self.training)

    def regularisation(self) -> torch.Tensor:
        """HGQ2's losses of the last training call: EBOPs x beta (0 unless `ebops_beta`) and bit-width L1."""
        losses = [torch.as_tensor(v).float().sum() for v in self.keras_model.losses]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    @torch.no_grad()
    def calibrate(self, x: np.ndarray) -> None:
        """Integer bits of every WRAP quantiser from the ranges on `x` (HGQ2's `trace_minmax`)."""
        from hgq.utils import trace_minmax

        trace_minmax(self.keras_model, np.asarray(x, dtype=np.float32), batch_size=4096)

    def input_kif(self) -> tuple[int, int, int]:
        """(keep-sign, integer, fraction) bits of the firmware input: the embedding's input quantiser."""
        kif = self._input_quantiser().quantizer.kif
        k, i, f = (int(torch.as_tensor(v).detach().max()) for v in kif)
        return k, i, f

    @torch.no_grad()
    def quantise_input(self, x: np.ndarray) -> np.ndarray:
        """`x` as the input quantiser stores it (what the Verilog's input port carries), float64."""
        q = self._input_quantiser()(torch.from_numpy(np.asarray(x, dtype=np.float32)), training=False)
        return q.detach().cpu().double().numpy()

    def _input_quantiser(self) -> Any:
        return self.keras_model.get_layer("embed").iq

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


def convert_attention(
    student: AttentionStudent, backend: str, part: str, clock_period: float, reuse_factor: int,
    strategy: str, io_type: str, out_dir: str | Path, compile: bool = True,
) -> tuple[Any, float]:  # fmt: skip
    """hls4ml model of the calibrated HGQ2 model (Keras-3 frontend, HGQ2 bit-exact types), written to
    out_dir and (unless not `compile`) compiled; returns (model, compile seconds)."""
    from hls4ml.converters import convert_from_keras_model

    from jetfm.fpga.convert import compile_or_write

    if io_type != "io_parallel":
        raise ValueError(f"the attention student converts with io_parallel only (HGQ2 einsum), not {io_type}")
    register_mha_handler()
    # HGQ2's bit-exact pass sets every type; the default precision is a placeholder it overrides
    config = {"Model": {"Precision": "ap_fixed<1,0>", "ReuseFactor": reuse_factor, "Strategy": strategy}}
    model = convert_from_keras_model(
        student.keras_model, output_dir=str(out_dir), backend=backend, part=part, clock_period=clock_period,
        io_type=io_type, hls_config=config,
    )  # fmt: skip
    return compile_or_write(model, compile)
