"""The `hgq_mlp` student on its own (no teacher, no hls4ml build): the jet MLP's standardised input, HGQ2's
heterogeneous bit widths, and EBOPs that `ebops_beta` pushes down. Its trip through the stage (conversion,
emulation and RTL bit-exact) is in test_attention_student.py, beside the other HGQ2 student's. ~15 s."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("hgq", reason="the hgq_mlp student needs hgq2 (pip install -e .[fpga])")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from jetfm.fpga.hgq_mlp import HGQMLPStudent  # noqa: E402
from jetfm.fpga.students import JetMLPStudent, build_student  # noqa: E402


def _trained(beta: float, jets: torch.Tensor, labels: torch.Tensor, steps: int = 40) -> HGQMLPStudent:
    torch.manual_seed(0)
    student = build_student("mlp_beta", 17, 8, 10, {"kind": "hgq_mlp", "dims": [16, 16], "ebops_beta": beta})
    student.fit_input(jets)
    opt = torch.optim.Adam(student.parameters(), lr=5e-2)  # Adam: a bit width moves ~lr per step
    student.train()
    for i in range(steps):
        batch = slice((i * 100) % len(jets), (i * 100) % len(jets) + 100)
        logits = student(None, None, None, jets[batch])
        loss = torch.nn.functional.cross_entropy(logits, labels[batch]) + student.regularisation()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student.eval()


def test_hgq_mlp_takes_the_jet_mlps_input_and_a_larger_beta_costs_fewer_ebops() -> None:
    g = torch.Generator().manual_seed(0)
    jets = torch.randn(600, 8, generator=g) * torch.logspace(-2, 3, 8)  # the raw spans of jet observables
    labels = torch.randint(0, 10, (600,), generator=g)
    free, pushed = _trained(0.0, jets, labels), _trained(1e-3, jets, labels)

    # the same standardisation as the hand-written jet MLP (fitted buffers, clamp), not a copy of it
    reference = JetMLPStudent(8, 10)
    reference.fit_input(jets)
    x = free.features(None, None, None, jets)
    assert torch.equal(x, reference.features(None, None, None, jets))
    assert free.input_shape == (8,) and "kind" not in free.__dict__

    # heterogeneous widths: HGQ2 learns one width per weight (not one per tensor)
    bits = free.keras_model.get_layer("dense0").kq.bits
    assert bits.shape == (8, 16)

    xs = x.numpy()
    ebops_free, ebops_pushed = free.calibrate(xs), pushed.calibrate(xs)
    assert 0 < ebops_pushed < 0.9 * ebops_free, (ebops_pushed, ebops_free)
    assert np.isfinite(pushed.logits(xs)).all()
