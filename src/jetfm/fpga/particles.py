"""The particle students' firmware input: what the trigger hardware upstream would deliver."""

from __future__ import annotations

import torch


def leading_particles(part_features: torch.Tensor, part_mask: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n, F + 1): the leading `n` particles' features and a 1 for real ones, zeros for padding (so a
    padded slot is all zeros whatever the loader left in it)."""
    x, m = part_features[:, :n], part_mask[:, :n].unsqueeze(-1).to(part_features.dtype)
    x = torch.cat([x * m, m], dim=-1)
    if x.shape[1] < n:  # the loader trims batches to their longest jet
        x = torch.nn.functional.pad(x, (0, 0, 0, n - x.shape[1]))
    return x
