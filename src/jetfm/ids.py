"""Globally unique, human-decodable 64-bit event ids.

Layout (most significant first): 4 bits stream (0 nominal, 1 re-simulation, 2 the robustness stage's
held-out events), 8 bits class index,
20 bits shard, 32 bits event index within the shard. Unique across classes, shards and streams,
so hash-based splits never mix samples by accident.
"""

from __future__ import annotations

import numpy as np

NOMINAL_STREAM = 0
RESIM_STREAM = 1
ROBUSTNESS_STREAM = 2  # held-out shifted evaluation samples: never in a training, validation or test split


def make_event_ids(stream: int, cls_index: int, shard: int, event_index: np.ndarray) -> np.ndarray:
    """Vectorised event ids for events `event_index` of (stream, class, shard)."""
    if not 0 <= stream < 16 or not 0 <= cls_index < 256 or not 0 <= shard < 2**20:
        raise ValueError(f"event id field out of range: stream={stream} class={cls_index} shard={shard}")
    idx = np.asarray(event_index, dtype=np.uint64)
    if idx.size and int(idx.max()) >= 2**32:
        raise ValueError("event index exceeds 2**32 within one shard")
    head = (stream << 60) | (cls_index << 52) | (shard << 32)
    return np.uint64(head) | idx


def decode_event_id(event_id: int) -> dict[str, int]:
    """Inverse of make_event_ids, for debugging and tests."""
    e = int(event_id)
    return {
        "stream": e >> 60,
        "class_index": (e >> 52) & 0xFF,
        "shard": (e >> 32) & 0xFFFFF,
        "event_index": e & 0xFFFFFFFF,
    }
