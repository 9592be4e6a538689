"""Re-simulation contrastive pretraining (RS3L; Harris, Kagan, Krupa et al. 2024).

The re-simulation stage gives K views of one hard event (shower and hadronisation rerun). The positives of a
jet are the other views of its event; every other jet of the batch is a negative. Loss: NT-Xent (SimCLR) with
several positives per anchor (for K = 2 exactly SimCLR's), on a projection head over the backbone's jet
embedding; temperature from config. Fine-tuning keeps the backbone and drops the projection.

Batches are whole events: `ViewStream` reads one training shard at a time (all K views of an event sit in
the same file), keeps the events with all K views, shuffles them (seeded by seed and epoch; DDP ranks take
every W-th event) and cuts batches of `events_per_batch` events. Only the files it is given are read:
pretraining is given the training split, which holds only train-split events (`jetfm.splits`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import IterableDataset, get_worker_info

from jetfm.models.part import ParTBackbone
from jetfm.shards import read_rows
from jetfm.train.data import ARRAYS, ShardMeta, make_loader, read_meta, to_torch, trim_padding


def nt_xent(z: torch.Tensor, event: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive NT-Xent: z (N, d) projections, event (N,) ids; the mean over anchors i of
    -1/|P(i)| sum_{p in P(i)} log(exp(s_ip) / sum_{a != i} exp(s_ia)), s = cos similarity / temperature,
    P(i) = the other jets of i's event. Anchors without a positive are left out."""
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.t() / temperature
    n = len(z)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    log_prob = sim.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    positive = (event.unsqueeze(0) == event.unsqueeze(1)) & ~self_mask
    n_pos = positive.sum(1)
    has = n_pos > 0
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1)[has] / n_pos[has])
    return per_anchor.mean()


def positive_top1(z: torch.Tensor, event: torch.Tensor) -> float:
    """Fraction of jets whose most similar other jet is a view of the same event."""
    z = F.normalize(z.float(), dim=1)
    sim = (z @ z.t()).fill_diagonal_(float("-inf"))
    return float((event[sim.argmax(1)] == event).float().mean())


class ContrastiveModel(nn.Module):
    """Backbone + projection head (Linear-GELU-Linear on the jet embedding)."""

    def __init__(self, backbone: ParTBackbone, projection_dim: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        d = backbone.embed_dim
        self.projection = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, projection_dim))

    def forward(
        self, part_features: torch.Tensor, part_vectors: torch.Tensor, part_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.projection(self.backbone(part_features, part_vectors, part_mask)[1])


def complete_events(event_id: np.ndarray, view: np.ndarray, views: int | None = None) -> list[np.ndarray]:
    """Row indices of each event that has all `views` views (default: the most views of any event), in order
    of first appearance; nominal rows (view -1) are not views."""
    rows = np.flatnonzero(view >= 0)
    if rows.size == 0:
        return []
    ids = event_id[rows]
    order = np.argsort(ids, kind="stable")
    __, start, count = np.unique(ids[order], return_index=True, return_counts=True)
    k = views or int(count.max())
    groups = [np.sort(rows[order[s : s + c]]) for s, c in zip(start, count, strict=True) if c == k]
    groups.sort(key=lambda g: g[0])
    return groups


class ViewStream(IterableDataset):
    """Batches of `events_per_batch` whole events with all their views (`event`: index of the event in the
    batch); same interface as `H5JetStream` for the loop (`meta`, `rows`, `epoch`)."""

    def __init__(
        self,
        paths: list[str | Path],
        events_per_batch: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        self.paths = [str(p) for p in paths]
        self.meta: ShardMeta = read_meta(self.paths)
        self.events_per_batch, self.seed, self.shuffle = events_per_batch, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.events = self.rows = 0
        for path in self.paths:
            with h5py.File(path, "r") as f:
                groups = complete_events(f["event_id"][:], f["view"][:])
            self.events += len(groups)
            self.rows += sum(len(g) for g in groups)
        if self.events < events_per_batch * world_size and drop_last:
            raise ValueError(
                f"{self.paths} hold {self.events} events with all their re-simulation views, fewer than "
                f"{events_per_batch} events per batch x {world_size} rank(s): enable resimulate or lower "
                "pretrain.rs3l.events_per_batch"
            )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stride, first = self.world_size * workers, self.rank * workers + worker  # no event twice
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        order = rng.permutation(len(self.paths)) if self.shuffle else np.arange(len(self.paths))
        pending: list[dict[str, np.ndarray]] = []
        for shard in order:
            with h5py.File(self.paths[shard], "r") as f:
                groups = complete_events(f["event_id"][:], f["view"][:])
                if not groups:
                    continue
                lo, hi = min(g[0] for g in groups), max(g[-1] for g in groups) + 1
                arrays = read_rows(f, lo, hi, (*ARRAYS, "event_id"))
            perm = rng.permutation(len(groups)) if self.shuffle else np.arange(len(groups))
            for e in perm[first::stride]:
                idx = groups[e] - lo
                pending.append({k: v[idx] for k, v in arrays.items()})
                if len(pending) == self.events_per_batch:
                    yield self._batch(pending)
                    pending = []
        if pending and not self.drop_last:
            yield self._batch(pending)

    @staticmethod
    def _batch(events: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        out = {k: np.concatenate([e[k] for e in events]) for k in events[0]}
        out["event"] = np.repeat(np.arange(len(events)), [len(e["label"]) for e in events])
        return to_torch(trim_padding(out))


def evaluate_views(model: nn.Module, files: list[str], events_per_batch: int, temperature: float,
                   device: torch.device, max_batches: int = 0) -> dict[str, float]:  # fmt: skip
    """Validation NT-Xent and positive top-1 over the validation events (fixed order, all batches)."""
    from jetfm.train.objectives import to_device

    stream = ViewStream(files, events_per_batch, shuffle=False, drop_last=False)
    was = model.training
    model.eval()
    losses, top1, weights = [], [], []
    with torch.no_grad():
        for i, batch in enumerate(make_loader(stream)):
            if max_batches and i >= max_batches:
                break
            b = to_device(batch, device)
            z = model(b["part_features"], b["part_vectors"], b["part_mask"])
            losses.append(nt_xent(z, b["event"], temperature).item())
            top1.append(positive_top1(z, b["event"]))
            weights.append(len(z))
    model.train(was)
    if not weights:
        return {}
    w = np.asarray(weights, dtype=np.float64)
    return {
        "val_loss": float(np.average(losses, weights=w)),
        "val_positive_top1": float(np.average(top1, weights=w)),
    }


def event_ids(paths: list[str | Path]) -> np.ndarray:
    """Every event id (nominal jets and views) of the shards."""
    parts = []
    for path in paths:
        with h5py.File(path, "r") as f:
            parts.append(f["event_id"][:])
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def check_disjoint_events(train_files: list[str], held_out: dict[str, list[str]]) -> dict[str, Any]:
    """Refuse to pretrain when an event of the pretraining files (a jet or any of its views) also appears in
    a held-out split; return the event counts for provenance."""
    train = event_ids(train_files)
    counts: dict[str, Any] = {"train_events": len(train)}
    for split, files in held_out.items():
        other = event_ids(files)
        shared = np.intersect1d(train, other)
        if shared.size:
            raise ValueError(
                f"{shared.size} event(s) of the pretraining files {train_files} also appear in the {split} "
                f"files {files} (e.g. event_id {int(shared[0])}): views or jets of held-out events must not "
                "enter pretraining"
            )
        counts[f"{split}_events"] = len(other)
    return counts
