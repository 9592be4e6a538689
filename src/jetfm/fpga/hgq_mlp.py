"""The `hgq_mlp` student: the jet MLP (`students.JetMLPStudent`'s input and widths) with HGQ2's library
quantisers instead of the hand-written fixed point of `compress.py`.

QDense + ReLU layers whose weights and activations each get their own bit width, learned by HGQ2 (the
default heterogeneous quantisers: one width per weight and per activation element), with EBOPs x
`ebops_beta` in the loss. The same standardised jet observables as the jet MLP (`JetStandardisation`,
fitted on the training set by the objective). It goes through the `hgq` route like the attention student.
"""

from __future__ import annotations

from typing import Any

from jetfm.fpga.hgq import HGQStudent, keras_module
from jetfm.models.baselines import JetStandardisation


def build_keras_mlp(num_jet_features: int, num_classes: int, dims: tuple[int, ...], ebops_beta: float) -> Any:
    """The HGQ2 functional model (input (num_jet_features,), output logits)."""
    keras = keras_module()
    from hgq.config import LayerConfigScope
    from hgq.layers import QDense

    with LayerConfigScope(beta0=ebops_beta, enable_ebops=True):
        h = x = keras.Input((num_jet_features,), name="jets")
        for i, d in enumerate(dims):
            h = QDense(d, activation="relu", name=f"dense{i}")(h)
        out = QDense(num_classes, name="logits")(h)
    return keras.Model(x, out, name="hgq_mlp_student")


class HGQMLPStudent(HGQStudent, JetStandardisation):
    """logits = HGQ2 MLP(standardised jet features)."""

    def __init__(
        self,
        num_jet_features: int,
        num_classes: int,
        dims: tuple[int, ...] = (64, 32, 32),
        ebops_beta: float = 0.0,
    ) -> None:
        JetStandardisation.__init__(self, num_jet_features)
        self.input_layer = "dense0" if dims else "logits"
        self._wrap(
            build_keras_mlp(num_jet_features, num_classes, tuple(dims), ebops_beta), (num_jet_features,)
        )
