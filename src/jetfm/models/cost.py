"""Multiply-accumulate counting shared by the models' `forward_macs` (the FLOPs of `flops_per_jet`)."""

from __future__ import annotations

from torch import nn


def linear_macs(module: nn.Module) -> int:
    """Multiply-accumulates of every Linear layer inside `module` for one input row."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))
