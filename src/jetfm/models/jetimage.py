"""Jet images from the particle four-vectors, as a batched tensor function (runs on CPU or GPU).

The standard preprocessing of image taggers (de Oliveira, Kagan, Mackey et al. 2016; Kagan, "Image-based
jet analysis"), each step switchable in `ImageSpec`:

1. coordinates: Δη, Δφ of every particle w.r.t. the jet axis (the summed four-vector), φ wrapped to (-π, π];
2. centre (`centre`): `axis` keeps the jet axis at the origin, `centroid` moves the pT-weighted centroid
   there, `leading` the hardest particle (the cheap stand-in for the leading subjet);
3. rotate (`rotate`): turn the plane about the origin so the pT-weighted principal axis (largest eigenvector
   of the second-moment tensor) points along +Δφ' (vertical in the figure);
4. flip (`flip`): mirror Δη' and/or Δφ' so the quadrant with the most pT is the upper-right one (x, y > 0;
   particles on an axis, e.g. the leading one with `centre: leading`, count to no quadrant);
5. pixelise: a `size` x `size` grid over [-extent, extent]^2; each channel sums one pT (or a count) per
   pixel; particles outside the extent are left out; `normalise` divides by the jet's scalar pT sum.

Why in the forward and not in preprocessing: building the images of a batch is a handful of elementwise ops
and one scatter-add, a few per cent of a CNN step (bench/images.py), while stored images would be an extra
(N, C, size, size) array per shard to write, read and re-preprocess for every change of size, extent,
channels or step. So the CNN keeps the registry's call signature and sees the same shards as the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from jetfm.preprocess.features import PARTICLE_FEATURE_NAMES

CENTRES = ("axis", "centroid", "leading")
# channel -> particle feature selecting its particles (None: all); `charged_count` counts instead of pT.
CHANNELS: dict[str, str | None] = {
    "total": None,
    "charged": "part_charge",
    "neutral_hadron": "part_isNeutralHadron",
    "photon": "part_isPhoton",
    "charged_count": "part_charge",
}


@dataclass(frozen=True)
class ImageSpec:
    """What an image is: grid, extent, channels and which preprocessing steps run."""

    size: int = 32  # pixels per side
    extent: float = 0.8  # the grid spans [-extent, extent] in Δη' and Δφ' (the jet radius R = 0.8)
    channels: tuple[str, ...] = ("total", "charged", "neutral_hadron", "photon")
    centre: str = "centroid"  # axis | centroid | leading
    rotate: bool = True  # principal axis -> vertical
    flip: bool = True  # most-pT quadrant -> upper right
    normalise: bool = True  # pixel pT / jet scalar pT sum

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"image size must be >= 1, got {self.size}")
        if not self.extent > 0:
            raise ValueError(f"image extent must be > 0, got {self.extent}")
        if self.centre not in CENTRES:
            raise ValueError(f"image centre must be one of {CENTRES}, got {self.centre!r}")
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown or not self.channels:
            raise ValueError(f"unknown image channel(s) {unknown or '[]'}; known: {sorted(CHANNELS)}")


def axis_coordinates(
    part_vectors: torch.Tensor, part_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Δη, Δφ, pT, keep) per particle w.r.t. the jet axis; keep = real particles with pT > 0."""
    v = part_vectors.float()
    px, py, pz = v[..., 0], v[..., 1], v[..., 2]
    pt = torch.hypot(px, py)
    keep = part_mask & (pt > 0)
    w = keep.float()
    jx, jy, jz = (px * w).sum(1), (py * w).sum(1), (pz * w).sum(1)
    jet_eta = torch.asinh(jz / torch.hypot(jx, jy).clamp_min(1e-12))
    jet_phi = torch.atan2(jy, jx)
    eta = torch.asinh(pz / pt.clamp_min(1e-12))
    dphi = torch.remainder(torch.atan2(py, px) - jet_phi.unsqueeze(1) + math.pi, 2 * math.pi) - math.pi
    deta = eta - jet_eta.unsqueeze(1)
    zero = torch.zeros_like(pt)
    return torch.where(keep, deta, zero), torch.where(keep, dphi, zero), torch.where(keep, pt, zero), keep


def preprocess_plane(
    x: torch.Tensor, y: torch.Tensor, pt: torch.Tensor, spec: ImageSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre, rotate and flip (N, P) plane coordinates with pT weights (0 for padding) as `spec` says."""
    w = pt
    total = w.sum(1, keepdim=True).clamp_min(1e-12)
    if spec.centre == "centroid":
        x = x - (w * x).sum(1, keepdim=True) / total
        y = y - (w * y).sum(1, keepdim=True) / total
    elif spec.centre == "leading":
        lead = w.argmax(1, keepdim=True)
        x, y = x - x.gather(1, lead), y - y.gather(1, lead)
    if spec.rotate:
        sxx, syy, sxy = (w * x * x).sum(1), (w * y * y).sum(1), (w * x * y).sum(1)
        theta = 0.5 * torch.atan2(2 * sxy, sxx - syy)  # angle of the principal axis to +x
        alpha = (math.pi / 2 - theta).unsqueeze(1)  # turn it onto +y
        c, s = torch.cos(alpha), torch.sin(alpha)
        x, y = x * c - y * s, x * s + y * c
    if spec.flip:
        sx, sy = torch.sign(x), torch.sign(y)  # 0 on an axis: such particles (the centre) count nowhere
        quadrants = torch.stack(
            [(w * (sx == a) * (sy == b)).sum(1) for a in (1, -1) for b in (1, -1)], 1
        )  # (N, 4): (+,+), (+,-), (-,+), (-,-)
        best = quadrants.argmax(1, keepdim=True)
        x = torch.where(best >= 2, -x, x)
        y = torch.where(best % 2 == 1, -y, y)
    return x, y


def channel_weights(part_features: torch.Tensor, pt: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    """(N, C, P) value each particle adds to each channel (its pT, or 1 for a count; 0 outside it)."""
    cols = []
    for name in spec.channels:
        feature = CHANNELS[name]
        if feature is None:
            cols.append(pt)
            continue
        if part_features.shape[-1] != len(PARTICLE_FEATURE_NAMES):
            raise ValueError(
                f"image channel {name!r} needs the particle feature {feature!r} at its place in the "
                f"{len(PARTICLE_FEATURE_NAMES)} standard features; part_features has "
                f"{part_features.shape[-1]} features (use channels: [total] for other layouts)"
            )
        flag = part_features[..., PARTICLE_FEATURE_NAMES.index(feature)].float() != 0
        cols.append(flag.float() * (pt > 0) if name.endswith("_count") else flag.float() * pt)
    return torch.stack(cols, 1)


def jet_images(
    part_features: torch.Tensor, part_vectors: torch.Tensor, part_mask: torch.Tensor, spec: ImageSpec
) -> torch.Tensor:
    """(N, C, size, size) float32 images; row index = Δφ' bin (bottom to top), column = Δη' bin."""
    x, y, pt, keep = axis_coordinates(part_vectors, part_mask)
    x, y = preprocess_plane(x, y, pt, spec)
    n, size = x.shape[0], spec.size
    scale = size / (2 * spec.extent)
    col = torch.floor((x + spec.extent) * scale).long()
    row = torch.floor((y + spec.extent) * scale).long()
    inside = keep & (col >= 0) & (col < size) & (row >= 0) & (row < size)
    index = torch.where(inside, row * size + col, torch.zeros_like(col))
    values = channel_weights(part_features, pt, spec) * inside.unsqueeze(1)
    if spec.normalise:
        norm = pt.sum(1).clamp_min(1e-12).view(n, 1, 1)
        counts = torch.tensor([c.endswith("_count") for c in spec.channels], device=values.device)
        values = torch.where(counts.view(1, -1, 1), values, values / norm)
    channels = len(spec.channels)
    images = values.new_zeros(n, channels, size * size)
    images.scatter_add_(2, index.unsqueeze(1).expand(n, channels, -1), values)
    return images.view(n, channels, size, size)
