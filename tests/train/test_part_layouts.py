"""The ParT's two layouts (packed for CPU eager, dense static-shape for GPUs and torch.compile) compute the
same function, bf16 stays close to fp32, and torch.compile matches eager across multiplicity distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures.train import make_jets

from jetfm.models import build_model
from jetfm.models.part import PAD_MULTIPLE, use_dense


def _batch(n: int, p: int, seed: int, classes: tuple[int, ...] = (0, 1, 8)) -> dict[str, torch.Tensor]:
    arrays = make_jets(n, np.random.default_rng(seed), max_particles=p, classes=classes)
    b = {k: torch.from_numpy(v) for k, v in arrays.items()}
    pad = ~b["part_mask"]
    b["part_features"][pad] = float("nan")  # neither layout may read a padded slot
    b["part_vectors"][pad] = float("nan")
    return b


def _step(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the gradient of every parameter for one cross-entropy step."""
    model.zero_grad(set_to_none=True)
    logits = model(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])
    F.cross_entropy(logits, b["label"]).backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters()]


def _tiny(seed: int = 0, **size: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("part", 17, 8, 10, preset="tiny", dropout=0.0, **size)


def test_dense_layout_equals_packed_on_the_same_weights() -> None:
    """The optimised (dense, static-shape) formulation against the previous (packed) one: logits and every
    gradient, with an empty jet, a jet filling every slot and NaN in all padded slots."""
    model = _tiny()
    b = _batch(12, 45, seed=3)
    b["part_mask"][4] = False  # an empty jet
    b["part_mask"][5] = True  # a full one (45 slots: the dense layout pads to 48)
    b["part_features"][5] = torch.randn(45, 17)
    b["part_vectors"][5] = b["part_vectors"][0, 0].abs() + torch.rand(45, 4)
    model.backbone.layout = "packed"
    ref, ref_grads = _step(model, b)
    model.backbone.layout = "dense"
    out, grads = _step(model, b)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-3, msg=lambda m, n=name: f"{n}: {m}")


def test_dense_backbone_pads_to_a_multiple_and_returns_the_callers_slots() -> None:
    model = _tiny().eval()
    model.backbone.layout = "dense"
    b = _batch(3, 21, seed=4)
    particles, jet = model.backbone(b["part_features"], b["part_vectors"], b["part_mask"])
    assert particles.shape == (3, 21, model.size.embed_dim) and jet.shape == (3, model.size.embed_dim)
    assert torch.equal(particles[~b["part_mask"]], torch.zeros_like(particles[~b["part_mask"]]))
    assert PAD_MULTIPLE == 16


def test_bf16_dense_step_stays_close_to_fp32() -> None:
    """bf16 autocast with the pair MLP run natively in bf16: logits within bf16 rounding of fp32."""
    model = _tiny().eval()
    model.backbone.layout = "dense"
    b = _batch(16, 40, seed=5)
    with torch.no_grad():
        ref = model(b["part_features"], b["part_vectors"], b["part_mask"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(b["part_features"], b["part_vectors"], b["part_mask"])
    assert low.dtype in (torch.bfloat16, torch.float32)
    err = (low.float() - ref).abs().max().item()
    assert err < 0.05 * ref.abs().max().item(), err


def test_auto_layout_is_dense_on_cuda_and_while_compiling_only() -> None:
    x = torch.zeros(1)
    assert not use_dense("auto", x) and use_dense("dense", x) and not use_dense("packed", x)
    with pytest.raises(ValueError, match="layout"):
        use_dense("sparse", x)


def test_compile_matches_eager_across_two_multiplicity_distributions() -> None:
    """One dynamic-shape compile of the ParT (fullgraph: no graph break, no data-dependent op such as
    `nonzero`, so nothing syncs with the host) trains like eager on two different multiplicity
    distributions (QCD-like ~20 particles in 32 slots, top-like ~30 in 64)."""
    torch._dynamo.reset()
    model = _tiny(depth=1, cls_depth=1)
    eager = _tiny(depth=1, cls_depth=1)
    eager.backbone.layout = "packed"
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for p, seed, classes in ((32, 6, (0,)), (64, 7, (8, 9))):
        b = _batch(8, p, seed, classes)
        out, grads = _step(compiled, b)
        ref, ref_grads = _step(eager, b)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-3)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-2)


@pytest.mark.parametrize("name", ["pfn", "mlp"])
def test_baselines_compile_fullgraph(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 17, 8, 10)
    b = _batch(6, 24, seed=8)
    b["part_features"] = torch.nan_to_num(b["part_features"])
    b["part_vectors"] = torch.nan_to_num(b["part_vectors"])
    ref, _ = _step(model, b)
    out, _ = _step(torch.compile(model, fullgraph=True, dynamic=True), b)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_masked_particle_model_agrees_across_layouts() -> None:
    """The MPM backbone + decoder (pretraining) give the same predictions and gradients in both layouts."""
    from jetfm.models import make_size
    from jetfm.models.part import ParTBackbone
    from jetfm.pretrain.masking import MaskedParticleDecoder, MaskedParticleModel, choose_hidden

    torch.manual_seed(0)
    backbone = ParTBackbone(17, make_size("part", {"preset": "tiny", "dropout": 0.0}))
    decoder = MaskedParticleDecoder(backbone.embed_dim, backbone.size.heads, 64, 11)
    model = MaskedParticleModel(backbone, decoder, None)
    b = _batch(10, 40, seed=9)
    hidden = choose_hidden(b["part_mask"], 0.3, torch.arange(len(b["part_mask"])))
    results = []
    for layout in ("packed", "dense"):
        backbone.layout = decoder.layout = layout
        model.zero_grad(set_to_none=True)
        pred = model(b["part_features"], b["part_vectors"], b["part_mask"], hidden)
        pred.square().mean().backward()
        results.append((pred.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (ref, ref_grads), (out, grads) = results
    assert out.shape == (int(hidden.sum()), 11)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-3)
