"""Jet images and the CNN tagger: pT bookkeeping, the preprocessing steps on hand-made jets, permutation
invariance and the registry entry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures.train import make_jets

from jetfm.models import build_model, count_parameters, flops_per_jet
from jetfm.models.jetimage import ImageSpec, axis_coordinates, jet_images, preprocess_plane


def tensors(arrays: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(arrays[k]) for k in ("part_features", "part_vectors", "part_mask"))


def vectors_at(pt: list[float], eta: list[float], phi: list[float]) -> torch.Tensor:
    """(1, P, 4) massless four-vectors (px, py, pz, E) of particles at (pt, eta, phi)."""
    pt_, eta_, phi_ = (torch.tensor(a, dtype=torch.float64) for a in (pt, eta, phi))
    p = torch.stack([pt_ * torch.cos(phi_), pt_ * torch.sin(phi_), pt_ * torch.sinh(eta_)], -1)
    return torch.cat([p, p.norm(dim=-1, keepdim=True)], -1).unsqueeze(0).float()


def test_axis_coordinates_match_numpy_and_wrap_phi() -> None:
    """Δη, Δφ w.r.t. the summed four-vector, φ wrapped: a jet straddling φ = ±π stays compact."""
    pt, eta, phi = [300.0, 200.0, 100.0], [0.5, 0.6, 0.3], [3.10, -3.12, 3.0]
    v = vectors_at(pt, eta, phi)
    deta, dphi, pts, keep = axis_coordinates(v, torch.ones(1, 3, dtype=torch.bool))
    jet = v[0].double().sum(0).numpy()
    jet_eta = np.arcsinh(jet[2] / np.hypot(jet[0], jet[1]))
    jet_phi = np.arctan2(jet[1], jet[0])
    want_dphi = (np.array(phi) - float(jet_phi) + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(deta[0].numpy(), np.array(eta) - float(jet_eta), atol=1e-5)
    np.testing.assert_allclose(dphi[0].numpy(), want_dphi, atol=1e-5)
    np.testing.assert_allclose(pts[0].numpy(), pt, rtol=1e-6)
    assert keep.all() and dphi.abs().max() < 0.2


@pytest.mark.parametrize("centre", ["axis", "centroid", "leading"])
@pytest.mark.parametrize("rotate_flip", [False, True])
def test_image_conserves_pt_inside_extent(centre: str, rotate_flip: bool) -> None:
    """Σ pixels of the total channel = Σ pT of the particles inside the extent (in the transformed plane);
    with an extent covering every particle that is the jet's whole scalar pT sum; channels split it."""
    arrays = make_jets(32, np.random.default_rng(1), max_particles=48)
    f, v, m = tensors(arrays)
    spec = ImageSpec(size=9, extent=0.4, channels=("total", "charged", "neutral_hadron", "photon"),
                     centre=centre, rotate=rotate_flip, flip=rotate_flip, normalise=False)  # fmt: skip
    x, y, pt, keep = axis_coordinates(v, m)
    x, y = preprocess_plane(x, y, pt, spec)
    inside = keep & (x.abs() < spec.extent) & (y.abs() < spec.extent)
    assert 0 < inside.sum() < keep.sum()  # the test cuts something and keeps something
    images = jet_images(f, v, m, spec)
    total = images[:, 0].sum((1, 2))
    torch.testing.assert_close(total, (pt * inside).sum(1), rtol=1e-5, atol=1e-3)
    charged = (f[..., 5] != 0) & inside
    torch.testing.assert_close(images[:, 1].sum((1, 2)), (pt * charged).sum(1), rtol=1e-5, atol=1e-3)
    wide = jet_images(f, v, m, ImageSpec(**{**spec.__dict__, "extent": 5.0, "normalise": True}))
    torch.testing.assert_close(wide[:, 0].sum((1, 2)), torch.ones(32), rtol=1e-5, atol=1e-5)


def test_rotation_puts_principal_axis_vertical() -> None:
    """Particles on a line at 30 degrees: after centring and rotation all lie on x = 0, spread along y."""
    t = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 3.0]]) * 0.1
    pt = torch.tensor([[1.0, 2.0, 5.0, 2.0, 1.0]])
    a = np.deg2rad(30)
    x, y = t * np.cos(a) + 0.05, t * np.sin(a) - 0.02
    spec = ImageSpec(centre="centroid", rotate=True, flip=False)
    xr, yr = preprocess_plane(x, y, pt, spec)
    assert xr.abs().max() < 1e-6
    centroid = (pt * t).sum() / pt.sum()
    np.testing.assert_allclose(yr.abs().numpy(), (t - centroid).abs().numpy(), atol=1e-6)
    # rotation alone (no flip) keeps distances to the centre
    np.testing.assert_allclose(np.hypot(xr.numpy(), yr.numpy()), (t - centroid).abs().numpy(), atol=1e-6)


def test_flip_moves_the_hardest_quadrant_to_upper_right() -> None:
    """Most pT in (-, -): both axes are mirrored, exactly, and nothing else changes."""
    x = torch.tensor([[0.1, -0.3, 0.2]])
    y = torch.tensor([[0.2, -0.1, -0.2]])
    pt = torch.tensor([[1.0, 5.0, 2.0]])
    spec = ImageSpec(centre="axis", rotate=False, flip=True)
    xf, yf = preprocess_plane(x, y, pt, spec)
    torch.testing.assert_close(xf, -x)
    torch.testing.assert_close(yf, -y)
    # most pT in (+, -): only y is mirrored
    pt2 = torch.tensor([[1.0, 1.0, 5.0]])
    xf, yf = preprocess_plane(x, y, pt2, spec)
    torch.testing.assert_close(xf, x)
    torch.testing.assert_close(yf, -y)
    # switched off: untouched
    xo, yo = preprocess_plane(x, y, pt, ImageSpec(centre="axis", rotate=False, flip=False))
    assert torch.equal(xo, x) and torch.equal(yo, y)


def test_hand_made_jet_image_end_to_end() -> None:
    """A three-prong jet from four-vectors: after all steps the hardest pixel is in the upper-right
    quadrant and the leading particle (centre=leading) sits in the central pixel of an odd grid."""
    v = vectors_at([400.0, 150.0, 50.0], [0.0, -0.3, 0.2], [1.0, 0.8, 1.25])
    mask = torch.ones(1, 3, dtype=torch.bool)
    feats = torch.zeros(1, 3, 17)
    spec = ImageSpec(size=11, extent=0.8, channels=("total",), centre="leading", normalise=False)
    img = jet_images(feats, v, mask, spec)[0, 0]
    assert img[5, 5] == pytest.approx(400.0, rel=1e-5)
    rows, cols = torch.nonzero(img, as_tuple=True)
    assert len(rows) == 3
    others = [(r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True) if (r, c) != (5, 5)]
    # the principal axis (through the second prong) is vertical: the 150 GeV prong is straight up
    second = max(others, key=lambda rc: float(img[rc]))
    assert second[1] == 5 and second[0] > 5


def test_cnn_is_independent_of_particle_order_and_padding() -> None:
    arrays = make_jets(16, np.random.default_rng(2), max_particles=40)
    f, v, m = tensors(arrays)
    torch.manual_seed(0)
    model = build_model("cnn", 17, 8, 10, preset="tiny").eval()
    with torch.no_grad():
        ref = model(f, v, m, None)
        perm = torch.randperm(40)
        shuffled = model(f[:, perm], v[:, perm], m[:, perm], None)
        pad = (0, 0, 0, 7)
        padded = model(torch.nn.functional.pad(f, pad), torch.nn.functional.pad(v, pad),
                       torch.nn.functional.pad(m, (0, 7)), None)  # fmt: skip
    torch.testing.assert_close(shuffled, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ref[0], ref[1])  # it is not constant


def test_cnn_registry_sizes_and_flops() -> None:
    tiny = build_model("cnn", 17, 8, 10, preset="tiny")
    resnet = build_model("cnn", 17, 8, 10, preset="resnet18", channels=["total", "charged", "photon"])
    # torchvision ResNet18 minus its 1000-class head plus ours: 11,176,512 + 512*10 + 10
    assert count_parameters(resnet) == 11_176_512 + 5_130
    assert count_parameters(tiny) < 10_000
    # ResNet18 at 224x224 is 1.814 GMACs; at 64x64 the convolutions scale with the pixel count
    flops = flops_per_jet(resnet, 30.0)
    assert flops == pytest.approx(2 * 1.814e9 * (64 / 224) ** 2, rel=0.03)
    with pytest.raises(ValueError, match="unknown image channel"):
        build_model("cnn", 17, 8, 10, channels=["colour"])
    with pytest.raises(ValueError, match="centre must be one of"):
        build_model("cnn", 17, 8, 10, centre="middle")
