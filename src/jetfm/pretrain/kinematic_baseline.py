"""How much of RS3L's view matching jet kinematics alone already solves: positive top-1 of a model-free
baseline, reported next to the model's.

Views of one event share the hard process, so their jets have nearly the same pT, η, φ, mass. If a jet's
nearest other jet *in these few numbers* is already a view of its own event, a positive top-1 near 1 says
little about what the backbone learned. The baseline uses the same validation batches as the model's number
(`contrastive.ViewStream`, unshuffled, `events_per_batch` events with all views), each jet described by its
`jet_features` (signed log1p, then standardised over the validation jets), and the nearest other jet by
Euclidean distance; top-1 = fraction of jets whose nearest is a view of the same event.
"""

from __future__ import annotations

import numpy as np
import torch

from jetfm.pretrain.contrastive import ViewStream
from jetfm.train.data import make_loader


def _squash(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def kinematic_top1(files: list[str], events_per_batch: int, max_batches: int = 0) -> dict[str, float]:
    """{'val_positive_top1_kinematics': ..., 'kinematics_jets': n} over the validation views."""
    stream = ViewStream(files, events_per_batch, shuffle=False, drop_last=False)
    batches = []
    for i, batch in enumerate(make_loader(stream)):
        if max_batches and i >= max_batches:
            break
        batches.append((_squash(batch["jet_features"].numpy().astype(np.float64)), batch["event"].numpy()))
    if not batches:
        return {}
    allx = np.concatenate([x for x, _ in batches])
    mean, std = allx.mean(0), allx.std(0)
    std[std == 0] = 1.0
    hits, n = 0, 0
    for x, event in batches:
        z = torch.from_numpy((x - mean) / std)
        dist = torch.cdist(z, z).fill_diagonal_(float("inf"))
        nearest = dist.argmin(1).numpy()
        hits += int((event[nearest] == event).sum())
        n += len(event)
    return {"val_positive_top1_kinematics": hits / n, "kinematics_jets": n}
