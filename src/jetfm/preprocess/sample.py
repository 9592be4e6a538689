"""A bounded, evenly spread sample of rows from HDF5 shards (report figures, fitted input scalings).

Reading whole columns of every shard grows with the dataset (a figure at 10^8 jets would read ~1.75 TB);
a sample of at most ~max_rows rows, taken as contiguous slices at evenly spaced offsets of every shard,
costs the same at any size. Shard rows are in hashed event order (`writer.plan_shard`), so every slice
already mixes files and classes; older shards are sorted by event_id, i.e. grouped by source file, and
spreading the slices over each shard still spreads the sample over them. Deterministic (no RNG).
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from jetfm.shards import read_rows

SLICE_ROWS = 256  # rows per contiguous read (one HDF5 chunk of a shard)


def sample_rows(
    paths: list[str | Path], keys: tuple[str, ...], max_rows: int, nominal_only: bool = True
) -> dict[str, np.ndarray]:
    """About max_rows rows (at most max_rows + number of shards) of `keys`, in proportion to shard sizes;
    every row when the shards hold fewer. `nominal_only` drops re-simulation views (view != -1)."""
    sizes = []
    for path in paths:
        with h5py.File(path, "r") as f:
            sizes.append(int(f["label"].shape[0]))
    fraction = min(1.0, max_rows / max(sum(sizes), 1))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for path, n in zip(paths, sizes, strict=True):
        want = min(n, math.ceil(n * fraction))
        if want == 0:
            continue
        n_slices = math.ceil(want / SLICE_ROWS)
        length = math.ceil(want / n_slices)
        starts = np.linspace(0, n - length, n_slices).astype(np.int64)
        with h5py.File(path, "r") as f:
            for a in starts.tolist():
                keep = f["view"][a : a + length] == -1 if nominal_only else slice(None)
                rows = read_rows(f, a, a + length, keys)
                for k in keys:
                    parts[k].append(rows[k][keep])
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
