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

The torch wrapper, calibration and conversion are every HGQ2 student's (`fpga/hgq.py`). Bit widths are
per tensor.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from jetfm.fpga.hgq import HGQStudent, keras_module
from jetfm.fpga.particles import leading_particles


def build_keras_model(
    num_features: int, num_classes: int, particles: int, embed_dim: int, heads: int, key_dim: int,
    head_dims: tuple[int, ...], weight_bits: int, fraction_bits: int, ebops_beta: float,
) -> Any:  # fmt: skip
    """The HGQ2 functional model (input (particles, num_features + 1), output logits)."""
    keras = keras_module()
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


class AttentionStudent(HGQStudent):
    """The attention model on the leading particles (`features`), wrapped as every HGQ2 student is."""

    input_layer = "embed"
    counted = "Dense layers only (the einsum layers are not)"
    notes: ClassVar[dict[str, str]] = {
        "padding": "no mask: each empty slot is a key of score 0 and value 0 in each head (docs/fpga.md)"
    }

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
        model = build_keras_model(num_features, num_classes, particles, embed_dim, heads, key_dim,
                                  tuple(head_dims), weight_bits, fraction_bits, ebops_beta)  # fmt: skip
        self._wrap(model, (particles, num_features + 1))

    def features(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor | None,
        part_mask: torch.Tensor,
        jet_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, particles, F + 1): leading particles' features and a 1 for real ones, zeros for padding."""
        return leading_particles(part_features, part_mask, self.particles)
