"""Compression: iterative magnitude pruning and quantisation-aware training in hls4ml's fixed-point types.

Why hand-written quantisers (docs/stages.md, "Why hand-written fixed-point quantisers", has the full
argument): hls4ml 1.3's PyTorch frontend converts plain `torch.nn` layers only. It has no handler for Brevitas
layers (those go through QONNX: onnx + qonnx + export) nor for PQuantML's torch layers (hls4ml#1400 came after
1.3), and HGQ2 models are Keras models. So the student stays a plain `nn.Sequential`, and the quantisation
lives in `torch.nn.utils.parametrize` parametrisations (weights, biases) and in `QuantReLU` (activations) that
apply *exactly* the arithmetic of `ap_fixed<W,I,Q,O>` (rounding Q in TRN / RND / RND_CONV, overflow O in WRAP
/ SAT). Export bakes the quantised weights into plain layers and hands hls4ml the same types, so the emulation
is bit-exact.
Magnitude selection reuses `torch.nn.utils.prune.L1Unstructured`.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from jetfm.configkeys import strict_fields

_TYPE = re.compile(
    r"^(?:ap_)?(?P<u>u?)fixed<\s*(?P<w>\d+)\s*,\s*(?P<i>-?\d+)\s*"
    r"(?:,\s*(?:AP_)?(?P<q>[A-Z_]+)\s*)?(?:,\s*(?:AP_)?(?P<o>[A-Z_]+)\s*)?(?:,\s*0\s*)?>$"
)
ROUNDING = ("TRN", "RND", "RND_CONV")
OVERFLOW = ("WRAP", "SAT")


@dataclasses.dataclass(frozen=True)
class FixedType:
    """ap_fixed<width, integer, rounding, overflow> (integer bits include the sign bit when signed)."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    @classmethod
    def parse(cls, text: str) -> FixedType:
        """Parse `ap_fixed<16,6,AP_RND_CONV,AP_SAT>` (or hls4ml's `fixed<16,6,RND_CONV,SAT>`)."""
        m = _TYPE.match(text.strip())
        if not m:
            raise ValueError(f"fixed-point type {text!r}: expected e.g. 'ap_fixed<16,6,AP_RND_CONV,AP_SAT>'")
        t = cls(int(m["w"]), int(m["i"]), not m["u"], m["q"] or "TRN", m["o"] or "WRAP")
        if t.rounding not in ROUNDING or t.overflow not in OVERFLOW:
            raise ValueError(
                f"fixed-point type {text!r}: rounding must be in {ROUNDING}, overflow in {OVERFLOW}"
            )
        if t.width < 1 or t.width > 64:
            raise ValueError(f"fixed-point type {text!r}: width must be 1..64")
        return t

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lo(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def hi(self) -> float:
        return 2.0 ** (self.integer - int(self.signed)) - 2.0**-self.frac

    def hls(self) -> str:
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.width},{self.integer},AP_{self.rounding},AP_{self.overflow}>"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The value ap_fixed stores for x (exact in float64 for any width up to 53 bits)."""
        scaled = x * 2.0**self.frac
        if self.rounding == "TRN":
            q = torch.floor(scaled)
        elif self.rounding == "RND":
            q = torch.floor(scaled + 0.5)
        else:  # RND_CONV: half to even, which is torch.round
            q = torch.round(scaled)
        lo, hi = self.lo * 2.0**self.frac, self.hi * 2.0**self.frac
        saturated = self.overflow == "SAT"
        q = q.clamp(lo, hi) if saturated else torch.remainder(q - lo, 2.0**self.width) + lo
        return q / 2.0**self.frac


def fake_quantize(x: torch.Tensor, t: FixedType) -> torch.Tensor:
    """Quantised forward, straight-through (identity) gradient."""
    return x + (t.quantize(x) - x).detach()


class Quantize(nn.Module):
    """Parametrisation: a tensor as stored in the fixed-point type."""

    def __init__(self, t: FixedType) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.t)


class PruneMask(nn.Module):
    """Parametrisation: weight * mask (mask a buffer, so the checkpoint keeps it)."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


class QuantReLU(nn.ReLU):
    """ReLU whose output is stored in `t` (hls4ml: the ReLU layer's result precision)."""

    def __init__(self, t: FixedType) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(torch.relu(x), self.t)


@dataclasses.dataclass(frozen=True)
class CompressSpec:
    """What compression does: fixed-point types (hls4ml strings) and the pruning schedule."""

    input: str = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    weight: str = "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"
    bias: str = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    activation: str = "ap_ufixed<12,5,AP_RND,AP_SAT>"  # AP_RND: the RTL route (da4ml) rounds so
    sparsity: float = 0.5  # fraction of each layer's weights set to zero at the end
    prune_stages: int = 4  # the sparsity rises in this many equal steps ...
    prune_until: float = 0.6  # ... reaching its target at this fraction of the training steps

    def __post_init__(self) -> None:
        for name in ("input", "weight", "bias", "activation"):
            FixedType.parse(getattr(self, name))  # raises naming the bad type
        if not 0 <= self.sparsity < 1:
            raise ValueError(f"fpga.compress.sparsity must be in [0, 1), got {self.sparsity}")
        if self.prune_stages < 1 or not 0 < self.prune_until <= 1:
            raise ValueError("fpga.compress.prune_stages must be >= 1 and prune_until in (0, 1]")

    def types(self) -> dict[str, FixedType]:
        return {k: FixedType.parse(getattr(self, k)) for k in ("input", "weight", "bias", "activation")}

    def sparsity_at(self, step: int, max_steps: int) -> float:
        """Staircase schedule: stage k of n holds sparsity * k / n (stage 1 from step 0)."""
        stage = 1 + int(step * self.prune_stages / max(1.0, self.prune_until * max_steps))
        return self.sparsity * min(stage, self.prune_stages) / self.prune_stages

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CompressSpec:
        return cls(**strict_fields(cls, values, "fpga.compress"))


def weight_layers(core: nn.Module) -> list[nn.Module]:
    return [m for m in core.modules() if isinstance(m, nn.Linear | nn.Conv1d)]


def apply_compression(core: nn.Sequential, spec: CompressSpec) -> None:
    """In place: weight/bias quantisers and pruning masks on every Linear/Conv1d, ReLU -> QuantReLU."""
    types = spec.types()
    for i, m in enumerate(core):
        if type(m) is nn.ReLU:
            core[i] = QuantReLU(types["activation"])
    for m in weight_layers(core):
        parametrize.register_parametrization(m, "weight", PruneMask(m.weight.shape))
        parametrize.register_parametrization(m, "weight", Quantize(types["weight"]))
        if m.bias is not None:
            parametrize.register_parametrization(m, "bias", Quantize(types["bias"]))


@torch.no_grad()
def prune_to(core: nn.Module, sparsity: float) -> None:
    """Raise every layer's mask to `sparsity` (fraction of zeros) by weight magnitude; masks only grow."""
    for m in weight_layers(core):
        mask_p = m.parametrizations.weight[0]
        w = m.parametrizations.weight.original * mask_p.mask
        k = round(sparsity * w.numel())
        if k > int((mask_p.mask == 0).sum()):
            mask_p.mask.copy_(prune.L1Unstructured(amount=k).compute_mask(w, mask_p.mask))


def sparsity(core: nn.Module) -> dict[str, float]:
    """Fraction of zero weights per layer, as the exported (quantised, masked) weights hold them."""
    return {
        name: float((m.weight == 0).float().mean())
        for name, m in core.named_modules()
        if isinstance(m, nn.Linear | nn.Conv1d)
    }


def export_plain(core: nn.Sequential, keep_activation_quant: bool = False) -> nn.Sequential:
    """A plain copy: quantised, masked weights baked into new Linear/Conv1d layers, QuantReLU -> ReLU (unless
    `keep_activation_quant`), float64 on CPU. Widths up to 53 bits are exact in float64; hls4ml gets the
    types through its config.
    """
    layers: list[nn.Module] = []
    for m in core:
        if isinstance(m, nn.Linear | nn.Conv1d):
            if isinstance(m, nn.Linear):
                new: nn.Module = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            else:
                new = nn.Conv1d(m.in_channels, m.out_channels, m.kernel_size, bias=m.bias is not None)
            with torch.no_grad():
                new.weight.copy_(m.weight.detach())
                if m.bias is not None:
                    new.bias.copy_(m.bias.detach())
            layers.append(new)
        elif isinstance(m, QuantReLU):
            layers.append(QuantReLU(m.t) if keep_activation_quant else nn.ReLU())
        else:
            layers.append(copy.deepcopy(m))
    return nn.Sequential(*layers).double().eval()
