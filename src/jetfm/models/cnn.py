"""A ResNet-style CNN jet tagger on jet images built inside its forward (same call signature as the others).

The layers carry torchvision's ResNet parameter names (`conv1`, `bn1`, `layer{i}.{j}.conv1/bn1/conv2/bn2/
downsample.{0,1}`, `fc`), so the preset `resnet18` loads a torchvision ResNet18 state dict key for key
(jetfm.images.transfer). Small presets use a 3x3 stride-1 stem without max-pool (CIFAR-style), which keeps
16x16 and 32x32 jet images from shrinking to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from jetfm.models.jetimage import ImageSpec, jet_images


@dataclass(frozen=True)
class CNNSize:
    # the image (jetfm.models.jetimage.ImageSpec)
    image_size: int = 64  # pixels per side
    extent: float = 0.8  # half-width of the grid in Δη', Δφ'
    channels: tuple[str, ...] = ("total", "charged", "neutral_hadron", "photon")
    centre: str = "centroid"  # axis | centroid | leading
    rotate: bool = True  # principal axis vertical
    flip: bool = True  # most-pT quadrant upper right
    normalise: bool = True  # pixel pT / jet pT sum
    # the network; defaults = torchvision's ResNet18 (BasicBlock, 2-2-2-2, 64..512, 7x7/2 stem + max-pool)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels per stage (stage i > 0 halves the resolution)
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # residual blocks per stage
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True  # 3x3/2 max-pool after the stem
    dropout: float = 0.0  # before the classifier

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ValueError(f"cnn widths {self.widths} and blocks {self.blocks} need the same (>0) length")
        self.image_spec()  # validates the image fields

    def image_spec(self) -> ImageSpec:
        return ImageSpec(
            self.image_size, self.extent, tuple(self.channels), self.centre, self.rotate, self.flip,
            self.normalise,
        )  # fmt: skip


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convs with BN, identity (or 1x1 conv + BN) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class JetCNN(nn.Module):
    """logits = ResNet(jet_images(particles)); permutation invariant because the image is a sum."""

    def __init__(self, num_classes: int, size: CNNSize | None = None) -> None:
        super().__init__()
        size = size or CNNSize()
        self.size = size
        self.image = size.image_spec()
        in_ch = len(size.channels)
        k = size.stem_kernel
        self.conv1 = nn.Conv2d(in_ch, size.widths[0], k, size.stem_stride, k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(size.widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if size.stem_pool else nn.Identity()
        prev = size.widths[0]
        for i, (width, n_blocks) in enumerate(zip(size.widths, size.blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layers = [
                BasicBlock(prev if j == 0 else width, width, stride if j == 0 else 1) for j in range(n_blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            prev = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(size.dropout)
        self.fc = nn.Linear(prev, num_classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.size.widths))]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, widths[-1]) pooled features (the part transfer learning reuses)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        for stage in self.stages():
            x = stage(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(
        self,
        part_features: torch.Tensor,
        part_vectors: torch.Tensor,
        part_mask: torch.Tensor,
        jet_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        images = jet_images(part_features, part_vectors, part_mask, self.image)
        return self.fc(self.dropout(self.features(images)))

    def forward_macs(self, p: float) -> float:
        """The convolutions on the image; building it is O(particles) and left out."""
        return self.macs()

    def macs(self) -> int:
        """Multiply-accumulates of the convolutions and the classifier for one image (shapes traced once)."""
        total = 0

        def count(module: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            nonlocal total
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                total += out[0].numel() * (module.in_channels // module.groups) * kh * kw
            elif isinstance(module, nn.Linear):
                total += module.in_features * module.out_features

        hooks = [
            m.register_forward_hook(count) for m in self.modules() if isinstance(m, nn.Conv2d | nn.Linear)
        ]
        was_training = self.training
        try:
            self.eval()
            with torch.no_grad():
                p = next(self.parameters())
                image = torch.zeros(
                    1, len(self.size.channels), self.image.size, self.image.size, device=p.device
                )
                self.fc(self.features(image))
        finally:
            self.train(was_training)
            for h in hooks:
                h.remove()
        return total
