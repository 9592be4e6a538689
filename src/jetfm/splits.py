"""Train/val/test assignment by a hash of event_id: stable across reruns, and every view of an event
lands in the same split (no leakage between pretraining views and the test set)."""

from __future__ import annotations

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")


def split_fraction_edges(fractions: dict[str, float]) -> np.ndarray:
    total = sum(fractions[s] for s in SPLITS)
    if abs(total - 1.0) > 1e-6 or any(fractions[s] < 0 for s in SPLITS):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    return np.cumsum([fractions[s] for s in SPLITS])


def hash_unit_interval(event_id: np.ndarray, salt: int = 0) -> np.ndarray:
    """A uniform number in [0, 1) per event id (splitmix64 finaliser; vectorised, platform independent)."""
    x = np.asarray(event_id, dtype=np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def assign_splits(event_id: np.ndarray, fractions: dict[str, float], salt: int = 0) -> np.ndarray:
    """Index into SPLITS for each event id."""
    edges = split_fraction_edges(fractions)
    u = hash_unit_interval(event_id, salt)
    return np.minimum(np.searchsorted(edges, u, side="right"), len(SPLITS) - 1).astype(np.int8)
