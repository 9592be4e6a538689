"""What the pretraining objectives (tokenizer, masked particles, RS3L contrastive) share.

- `SeededStream`: the jet stream with a `batch_seed` per batch, derived from (seed, epoch, rank, worker,
  batch index). Objectives draw their randomness (masks) from a `torch.Generator` seeded with it, never from
  the global RNG: a resumed run replays the epoch to the same batch index and draws the same masks, whatever
  else consumed global random numbers in between.
- `Unsupervised`: an objective whose run ends with `summary.json` (the last validation numbers, the sizes,
  the objective's settings, provenance) instead of test metrics; no labels are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from jetfm.atomic import write_json_atomic
from jetfm.train.config import TrainConfig
from jetfm.train.data import H5JetStream
from jetfm.train.objectives import Objective, RunEnd


def batch_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy's SeedSequence hashing: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator_for(batch: dict[str, torch.Tensor]) -> torch.Generator:
    return torch.Generator().manual_seed(int(batch["batch_seed"]))


class SeededStream(H5JetStream):
    """`H5JetStream` whose batches carry `batch_seed` (a 0-dim int64 tensor)."""

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info else 0
        for i, batch in enumerate(super().__iter__()):
            batch["batch_seed"] = torch.tensor(batch_seed(self.seed, self.epoch, self.rank, worker, i))
            yield batch


class Unsupervised(Objective):
    """Base of the pretraining objectives: `evaluate` keeps its last numbers, `finish` writes summary.json."""

    last_val: dict[str, float]

    def validation(
        self, module: torch.nn.Module, val_files: list[str], cfg: TrainConfig, device: torch.device
    ) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(
        self, module: torch.nn.Module, val_files: list[str], cfg: TrainConfig, device: torch.device
    ) -> dict[str, float]:
        self.last_val = self.validation(module, val_files, cfg, device)
        return self.last_val

    def finish(self, module: torch.nn.Module, end: RunEnd) -> dict[str, Any] | None:
        summary = {"objective": self.describe(), **getattr(self, "last_val", {}), **end.extras["metrics"]}
        write_json_atomic(end.out / "summary.json", summary)
        return summary
