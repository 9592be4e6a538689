"""Models: ParT symmetries (permutation, padding), registry, parameter count, FLOPs, no NaN on empty jets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.train import make_jets

from jetfm.models import build_model, count_parameters, flops_per_jet


def _batch(n: int = 6, p: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    arrays = make_jets(n, np.random.default_rng(seed), max_particles=p)
    return {
        k: torch.from_numpy(v)
        for k, v in arrays.items()
        if k in ("part_features", "part_vectors", "part_mask", "jet_features")
    }


def _run(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(b["part_features"], b["part_vectors"], b["part_mask"], b["jet_features"])


@pytest.fixture(scope="module")
def part() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("part", 17, 8, 10, preset="small").eval()


@pytest.mark.parametrize("name", ["part", "pfn"])
def test_output_invariant_under_particle_permutation(name: str, part: torch.nn.Module) -> None:
    model = part if name == "part" else build_model("pfn", 17, 8, 10).eval()
    b = _batch()
    perm = torch.randperm(b["part_mask"].shape[1], generator=torch.Generator().manual_seed(1))
    shuffled = {k: v[:, perm] if k.startswith("part_") else v for k, v in b.items()}
    assert not torch.equal(shuffled["part_mask"], b["part_mask"])  # padding moved too: a real permutation
    with torch.no_grad():
        torch.testing.assert_close(_run(model, shuffled), _run(model, b), atol=1e-5, rtol=1e-4)


def test_output_unchanged_by_padded_slot_content_and_amount(part: torch.nn.Module) -> None:
    b = _batch()
    pad = ~b["part_mask"]
    garbage = {k: v.clone() for k, v in b.items()}
    garbage["part_features"][pad] = torch.randn(int(pad.sum()), 17) * 50
    garbage["part_vectors"][pad] = torch.rand(int(pad.sum()), 4) * 900
    longer = {
        k: torch.cat([v, torch.zeros_like(v[:, :25])], 1) if k.startswith("part_") else v
        for k, v in b.items()
    }
    with torch.no_grad():
        ref = _run(part, b)
        torch.testing.assert_close(_run(part, garbage), ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(_run(part, longer), ref, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(ref[0], ref[1])  # different jets, different outputs


def test_jet_output_independent_of_batch_composition(part: torch.nn.Module) -> None:
    b = _batch()
    with torch.no_grad():
        full = _run(part, b)
        single = _run(part, {k: v[2:3] for k, v in b.items()})
    torch.testing.assert_close(single[0], full[2], atol=1e-5, rtol=1e-4)


def test_empty_jet_gives_finite_output_and_gradients(part: torch.nn.Module) -> None:
    b = _batch(n=3)
    b["part_mask"][1] = False
    model = build_model("part", 17, 8, 10, preset="tiny")
    out = _run(model, b)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_jetclass_part_has_the_papers_parameter_count() -> None:
    n = count_parameters(build_model("part", 17, 8, 10, preset="jetclass"))
    assert abs(n - 2.14e6) / 2.14e6 < 0.005, n


def test_flops_grow_with_particles_and_size() -> None:
    small = build_model("part", 17, 8, 10, preset="small")
    big = build_model("part", 17, 8, 10, preset="jetclass")
    assert flops_per_jet(big, 50) > flops_per_jet(small, 50) > 0
    assert flops_per_jet(big, 100) > 2 * flops_per_jet(big, 50)  # pair terms are quadratic
    assert flops_per_jet(build_model("mlp", 17, 8, 10), 50) == flops_per_jet(
        build_model("mlp", 17, 8, 10), 100
    )


def test_registry_rejects_unknown_names_and_keys() -> None:
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        build_model("transformer", 17, 8, 10)
    with pytest.raises(ValueError, match="unknown size key"):
        build_model("part", 17, 8, 10, embed=64)
    with pytest.raises(ValueError, match="divisible"):
        build_model("part", 17, 8, 10, embed_dim=30, heads=4)


def test_pair_bias_is_the_pair_mlp_of_every_real_pair_and_zero_elsewhere(part: torch.nn.Module) -> None:
    """The model embeds only real pairs i <= j, flattened over the batch. The bias it scatters back must equal
    the pair MLP on the dense feature matrix, on both triangles, and be zero wherever a slot is padded."""
    from jetfm.models.pairwise import pair_features

    b = _batch(n=5, p=30, seed=3)
    mask = b["part_mask"]
    with torch.no_grad():
        bias = part.pair_embed(b["part_vectors"], mask)  # (B, H, P, P)
        feats = pair_features(b["part_vectors"], mask).permute(0, 2, 3, 1)  # (B, P, P, 4)
        dense = part.pair_embed.net(feats)  # (B, P, P, H)
    real = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(1).expand_as(bias)
    assert 0 < int(real[:, 0].sum()) < real[:, 0].numel()  # both real and padded pairs present
    torch.testing.assert_close(bias[real], dense.permute(0, 3, 1, 2)[real], atol=1e-5, rtol=1e-5)
    assert torch.equal(bias[~real], torch.zeros_like(bias[~real]))
    torch.testing.assert_close(bias, bias.transpose(2, 3))
