"""What the pretraining objectives (tokenizer, masked particles, RS3L contrastive) share.

- `SeededStream`: the jet stream whose batches carry `jet_seed`, one seed per jet from (seed, epoch, shard,
  row) (`masking.jet_seeds`). Objectives draw their randomness (masks) from it, never from the global RNG
  or a per-rank stream: a resumed run draws the same masks, and so do W ranks and one process at the same
  global batch (a jet's mask does not depend on the batch, rank or loader worker it lands in).
- `Unsupervised`: an objective whose run ends with `summary.json` (the last validation numbers, the sizes,
  the objective's settings, provenance) instead of test metrics; no labels are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jetfm.atomic import write_json_atomic
from jetfm.pretrain.masking import jet_seeds
from jetfm.train.config import TrainConfig
from jetfm.train.data import Block, H5JetStream, OpenFiles
from jetfm.train.jagged import JaggedRows
from jetfm.train.objectives import Objective, RunEnd


def batch_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy's SeedSequence hashing: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class SeededStream(H5JetStream):
    """`H5JetStream` whose batches carry `jet_seed` ((B,) int64, `masking.jet_seeds`)."""

    def _read(self, files: OpenFiles, block: Block) -> JaggedRows:
        rows = super()._read(files, block)
        keep = self._keep(files.get(block.shard), block)
        index = np.arange(block.start, block.stop) if keep is None else block.start + np.flatnonzero(keep)
        seeds = jet_seeds(batch_seed(self.seed, self.epoch), block.shard, index)
        return JaggedRows({**rows.jets, "jet_seed": seeds}, rows.counts, rows.particles)


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
