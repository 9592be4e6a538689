"""Re-simulation contrastive pretraining (RS3L; Harris, Kagan, Krupa et al. 2024).

The re-simulation stage gives K views of one hard event (shower and hadronisation rerun). The positives of a
jet are the other views of its event; every other jet of the batch is a negative. Loss: NT-Xent (SimCLR) with
several positives per anchor (for K = 2 exactly SimCLR's), on a projection head over the backbone's jet
embedding; temperature from config. Fine-tuning keeps the backbone and drops the projection.

Batches are whole events: `ViewStream` reads one training shard at a time (all K views of an event sit in
the same file), keeps the events with all K views, shuffles them (seeded by seed and epoch) and cuts global
batches of `events_per_batch` events, each rank taking a contiguous 1/W of every batch. Only the files it is
given are read: pretraining is given the training split, which holds only train-split events
(`jetfm.splits`).

Under DDP the negatives of a rank's anchors are the jets of all ranks (`ddp_nt_xent`): the projections are
gathered with an all_gather that backpropagates, so W ranks optimise exactly the loss of one process on the
concatenated batch (tests/train/test_ddp_objectives.py). Gathering only the local batch would shrink the
negatives W-fold and change the objective with the GPU count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import IterableDataset, get_worker_info

from jetfm.models.part import ParTBackbone
from jetfm.shards import read_rows
from jetfm.train.data import ARRAYS, ShardMeta, make_loader, read_meta, to_torch, trim_padding
from jetfm.train.ddp import global_mean


def anchor_terms(
    z: torch.Tensor, event: torch.Tensor, temperature: float, rows: slice | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor NT-Xent terms of the anchors `rows` (default all) against every row of z (N, d): for anchor
    i, -1/|P(i)| sum_{p in P(i)} log(exp(s_ip) / sum_{a != i} exp(s_ia)), s = cos similarity / temperature,
    P(i) = the other rows of i's event. Returns (terms, has_positive); terms are 0 where there is none."""
    rows = rows or slice(0, len(z))
    z = F.normalize(z.float(), dim=1)
    anchors = torch.arange(len(z), device=z.device)[rows]
    sim = z[rows] @ z.t() / temperature
    self_mask = anchors.unsqueeze(1) == torch.arange(len(z), device=z.device).unsqueeze(0)
    log_prob = sim.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    positive = (event[rows].unsqueeze(1) == event.unsqueeze(0)) & ~self_mask
    n_pos = positive.sum(1)
    terms = -log_prob.masked_fill(~positive, 0.0).sum(1) / n_pos.clamp_min(1)
    return terms, n_pos > 0


def nt_xent(z: torch.Tensor, event: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive NT-Xent of one batch: the mean of `anchor_terms` over the anchors with a positive."""
    terms, has = anchor_terms(z, event, temperature)
    return terms[has].mean()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather that backpropagates (as SimCLR implementations do): every rank's loss depends on every
    rank's rows, so the backward pass sums the gradients of the gathered tensor over ranks (all_reduce) and
    hands each rank the slice of its own rows. Rows are padded to the largest rank's count for the
    collective and cut again."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, counts: list[int]) -> torch.Tensor:  # type: ignore[override]
        rank, width = dist.get_rank(), max(counts)
        ctx.rank, ctx.width, ctx.counts = rank, width, counts
        padded = F.pad(x, (0, 0, 0, width - len(x))).contiguous()
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum over ranks of d(loss_r)/d(all rows)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]], None


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_views(z: torch.Tensor, event: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, slice]:
    """The projections and event indices of every rank's batch, concatenated in rank order (z with gradients
    to every rank), and the slice of this rank's rows. Event indices (0..E-1 within a rank's batch) are
    offset per rank so they stay distinct: ranks hold whole events (`ViewStream`), never parts of one."""
    if not distributed():
        return z, event, slice(0, len(z))
    rank = dist.get_rank()
    mine = torch.tensor([len(z), int(event.max()) + 1 if len(event) else 0], device=z.device)
    sizes = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, mine)
    counts, n_events = [int(s[0]) for s in sizes], [int(s[1]) for s in sizes]
    z_all = _GatherWithGrad.apply(z.float(), counts)
    offset = torch.tensor(sum(n_events[:rank]), device=event.device)
    with torch.no_grad():  # integer indices: the same collective, nothing to differentiate
        event_all = _GatherWithGrad.apply((event + offset).unsqueeze(1), counts).squeeze(1)
    start = sum(counts[:rank])
    return z_all, event_all, slice(start, start + len(z))


def ddp_nt_xent(z: torch.Tensor, event: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over the global batch under DDP: negatives and positives from all ranks (gathered with
    gradients), anchors of this rank only, scaled so that DDP's gradient average over W ranks gives exactly
    the gradient of the mean over all anchors of the global batch (the single-process loss on the
    concatenated batch). The returned value is this rank's share times W: its mean over ranks is that loss."""
    z_all, event_all, rows = gather_views(z, event)
    terms, has = anchor_terms(z_all, event_all, temperature, rows)
    return global_mean(terms[has].sum(), has.sum())


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
    """Batches of whole events with all their views (`event`: index of the event in the batch); same
    interface as `H5JetStream` for the loop (`meta`, `rows`, `epoch`).

    `events_per_batch` is the global batch (all ranks together). The epoch's event order is one sequence,
    independent of the number of ranks and loader workers: shards in a seeded order, each shard's complete
    events in a seeded order. Global batch k is events [kE, (k+1)E) of it; rank r of W takes the r-th of W
    equal contiguous parts, and a DataLoader worker w of n takes the batches k = w mod n (the loader deals
    them round robin, so they come back in order). W ranks thus see exactly the events of one process's
    batch, split, and an event's views never straddle ranks."""

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
        if events_per_batch % world_size:
            raise ValueError(
                f"pretrain.rs3l.events_per_batch = {events_per_batch} (events per step, all ranks together) "
                f"is not divisible by the {world_size} ranks"
            )
        self.paths = [str(p) for p in paths]
        self.meta: ShardMeta = read_meta(self.paths)
        self.events_per_batch, self.seed, self.shuffle = events_per_batch, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.per_rank = events_per_batch // world_size
        self.epoch = 0
        self.events = self.rows = 0
        for path in self.paths:
            with h5py.File(path, "r") as f:
                groups = complete_events(f["event_id"][:], f["view"][:])
            self.events += len(groups)
            self.rows += sum(len(g) for g in groups)
        if self.events < events_per_batch and drop_last:
            raise ValueError(
                f"{self.paths} hold {self.events} events with all their re-simulation views, fewer than "
                f"{events_per_batch} events per batch: enable resimulate or lower "
                "pretrain.rs3l.events_per_batch"
            )

    def _mine(self, index: int, worker: int, workers: int) -> bool:
        """Whether the event at position `index` of the epoch's sequence belongs to this rank and worker."""
        batch, pos = divmod(index, self.events_per_batch)
        if self.drop_last and batch >= self.events // self.events_per_batch:
            return False
        return batch % workers == worker and pos // self.per_rank == self.rank

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        order = rng.permutation(len(self.paths)) if self.shuffle else np.arange(len(self.paths))
        pending: list[dict[str, np.ndarray]] = []
        index = 0  # position in the epoch's global event sequence
        for shard in order:
            with h5py.File(self.paths[shard], "r") as f:
                groups = complete_events(f["event_id"][:], f["view"][:])
                if not groups:
                    continue
                perm = rng.permutation(len(groups)) if self.shuffle else np.arange(len(groups))
                mine = [e for i, e in enumerate(perm) if self._mine(index + i, worker, workers)]
                index += len(groups)
                if not mine:
                    continue
                lo, hi = min(groups[e][0] for e in mine), max(groups[e][-1] for e in mine) + 1
                arrays = read_rows(f, lo, hi, (*ARRAYS, "event_id"))
            for e in mine:
                idx = groups[e] - lo
                pending.append({k: v[idx] for k, v in arrays.items()})
                if len(pending) == self.per_rank:
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
