"""Stop a diverging run before it overwrites anything: a non-finite loss or gradient norm is an error.

Checked after the backward pass and before the optimiser step, so the weights stay finite and the last
checkpoint on disk (written at an earlier step) is the last good state.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch


class NonFiniteError(ValueError):
    """The loss or the gradient norm became NaN or infinite."""


def check_finite(step: int, loss: float, grad_norm: torch.Tensor | float, checkpoint: Path) -> None:
    """Raise NonFiniteError (naming the step and the last good checkpoint) unless both are finite."""
    norm = float(grad_norm)
    if math.isfinite(loss) and math.isfinite(norm):
        return
    kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint.exists() else "no checkpoint yet"
    raise NonFiniteError(
        f"training diverged at step {step}: loss {loss}, gradient norm {norm} (non-finite; check the inputs "
        f"for NaN/inf features, or lower the learning rate); stopped before the optimiser step, {kept}"
    )
