"""How a pretrained backbone is fine-tuned beyond one learning rate: layer-wise LR decay, freeze-then-
unfreeze, and the best-validation weights; all through the objective's hooks into the one loop
(`train/loop.py`).

- Layer-wise LR decay (BEiT, ELECTRA; used by OmniLearned/OmniJet fine-tuning): the layers nearest the input
  hold the most generic features and move least. `layerwise_scales` gives each backbone parameter a factor on
  the LR for the objective's optimiser groups (`decay_groups`), the LambdaLR schedule multiplying each group.
- Freeze-then-unfreeze (ULMFiT's gradual unfreezing, in one step): a fresh head's first, large gradients
  would otherwise flow into, and disturb, the pretrained weights. `FreezeSchedule` counts micro-batches in a
  buffer of the model (so the count is checkpointed and a resumed run continues it) and, while frozen, the
  loss runs the backbone without gradient and in eval mode; AdamW skips parameters without gradient, so the
  backbone does not move at all (not even by weight decay).
- Best validation: the loop writes best.pt when the objective's `best_metric` improves
  (`train/checkpoint.BestCheckpoint`); `restore_best` loads it before the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

COUNTER = "finetune_micro_batches"
PREDICTIONS = "test_predictions.npz"
BEST = "best.pt"


def layerwise_scales(backbone: nn.Module, decay: float, base: float = 1.0) -> dict[int, float]:
    """id(parameter) -> LR factor: base x decay^k, k = 1 for the class-attention part (class token, its
    blocks, final norm), 2 for the last particle block ... depth + 1 for the first, depth + 2 for the particle
    and pair embeddings. The head (not in the backbone) keeps 1."""
    depth = len(backbone.blocks)
    levels: list[tuple[int, nn.Module | nn.Parameter | None]] = [
        (1, backbone.cls_blocks), (1, backbone.norm), (1, backbone.cls_token),
        *((1 + depth - i, b) for i, b in enumerate(backbone.blocks)),
        (depth + 2, backbone.embed), (depth + 2, backbone.pair_embed),
    ]  # fmt: skip
    scales: dict[int, float] = {}
    for k, part in levels:
        params = [part] if isinstance(part, nn.Parameter) else list(part.parameters()) if part else []
        for p in params:
            scales[id(p)] = base * decay**k
    missing = [n for n, p in backbone.named_parameters() if id(p) not in scales]
    if missing:
        raise ValueError(f"layer-wise LR decay: backbone parameters without a level: {missing}")
    return scales


class FreezeSchedule:
    """Backbone frozen for the first `steps` optimiser steps of a fine-tuning run, then trained."""

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)
        self.model: nn.Module | None = None
        self.per_step = 1

    def attach(self, model: nn.Module, grad_accum: int) -> None:
        model.register_buffer(COUNTER, torch.zeros((), dtype=torch.long))
        self.model, self.per_step = model, int(grad_accum)

    def check_single_process(self) -> None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise ValueError(
                "finetune.freeze_steps > 0 runs the frozen backbone outside DDP; fine-tune on one "
                "process or set finetune.freeze_steps: 0"
            )

    def frozen_now(self) -> bool:
        """Count this training micro-batch; True while inside the frozen steps."""
        assert self.model is not None, "FreezeSchedule.attach first"
        counter = getattr(self.model, COUNTER)
        n = int(counter)
        counter.add_(1)
        return n < self.steps * self.per_step

    def head_only(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits with the backbone run without gradient, in eval mode (no dropout on frozen weights)."""
        assert self.model is not None
        backbone = self.model.backbone
        was = backbone.training
        backbone.eval()
        with torch.no_grad():
            _, jet = backbone(b["part_features"], b["part_vectors"], b["part_mask"])
        backbone.train(was)
        return self.model.head(jet)


def restore_best(module: nn.Module, out: Path) -> dict[str, Any] | None:
    """Load the best-validation weights of the run (best.pt) into `module`; what was selected, or None."""
    path = Path(out) / BEST
    if not path.is_file():
        return None
    best = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(best["model"])
    return {"step": int(best["step"]), "metric": best["metric"], "value": float(best["value"]),
            "validation": {k: float(v) for k, v in best["validation"].items()}}  # fmt: skip


def save_predictions(path: Path, probs: np.ndarray, labels: np.ndarray) -> None:
    """Per-test-jet probabilities (float16) and labels, in test-file order (the same for every run)."""
    np.savez_compressed(path, probs=probs.astype(np.float16), labels=labels.astype(np.int16))
