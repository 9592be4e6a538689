"""Nested training subsets: the first D jets of one deterministic order of a split.

The order is a seeded 64-bit hash of `event_id` (ties: file, then row), so the first D jets are a random,
class-mixed sample, the same for every D: a smaller subset is contained in every larger one, and cells that
differ only in D see the same jets up to the smaller D. Only nominal rows (view = -1) are counted and kept.
No torch here: Snakemake's subset jobs stay light.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetfm import shards
from jetfm.atomic import atomic_path
from jetfm.provenance import make_provenance

ROWS_PER_READ = 16384
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix64(x: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 finaliser of x + seed: a well-mixed, platform-independent 64-bit hash per element."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK64


def nominal_order(paths: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(file index, row) of every nominal row, in the subset order (hash of event_id, then file, row)."""
    files, rows, keys = [], [], []
    for i, path in enumerate(paths):
        with h5py.File(path, "r") as f:
            for name in ("event_id", "view"):
                if name not in f:
                    raise ValueError(f"HDF5 shard {path} lacks dataset {name!r} needed to order the subset")
            view = f["view"][:]
            keep = np.flatnonzero(view == -1)
            keys.append(mix64(f["event_id"][:][keep], seed))
            rows.append(keep)
            files.append(np.full(len(keep), i))
    if not keys:
        raise ValueError("no HDF5 shards given to order")
    file_idx, row_idx, key = np.concatenate(files), np.concatenate(rows), np.concatenate(keys)
    order = np.lexsort((row_idx, file_idx, key))  # last key is primary
    return file_idx[order], row_idx[order]


def write_subset(
    paths: list[str], jets: int, out: str | Path, seed: int, split: str = "train"
) -> dict[str, Any]:
    """Write the first `jets` nominal jets of the order into one shard `out` (rows in file order)."""
    t0 = time.time()
    file_idx, row_idx = nominal_order(paths, seed)
    if jets > len(row_idx):
        raise ValueError(
            f"scaling subset of {jets} {split} jets requested, but {paths} hold only "
            f"{len(row_idx)} nominal jets"
        )
    available = len(row_idx)
    file_idx, row_idx = file_idx[:jets], row_idx[:jets]
    with h5py.File(paths[0], "r") as f:
        names = shards.row_keys(f)
        template = shards.read_rows(f, 0, 0, names)
        layout = shards.layout_version(f)
        compression = shards.compression_of(f) if layout == shards.PACKED else "gzip"
        attrs = {k: v for k, v in f.attrs.items() if k != "provenance"}
    written = 0
    with atomic_path(out) as tmp, h5py.File(tmp, "x") as dst:
        # the subset keeps its source's layout (a packed one stays packed, so the loader stays fast)
        rows = shards.RowWriter(dst, layout, template, min(256, jets), compression)
        for i, path in enumerate(paths):
            wanted = np.sort(row_idx[file_idx == i])
            if not len(wanted):
                continue
            with h5py.File(path, "r") as src:
                for start in range(0, int(wanted[-1]) + 1, ROWS_PER_READ):
                    sel = wanted[(wanted >= start) & (wanted < start + ROWS_PER_READ)]
                    if len(sel):
                        rows.append(shards.read_selected(src, sel, names, ROWS_PER_READ))
        written = rows.rows
        for k, v in attrs.items():
            dst.attrs[k] = v
        dst.attrs["provenance"] = json.dumps(
            make_provenance(
                "scaling-subset", {}, seed, counts={"nominal_jets_in": available, "jets_requested": jets,
                                              "jets_out": written},
                wall_time_s=time.time() - t0, inputs=list(paths), split=split,
            ),
            default=str,
        )  # fmt: skip
    if written != jets:
        raise RuntimeError(f"scaling subset {out}: wrote {written} jets, expected {jets}")
    return {"jets": written, "labels": _label_counts(out)}


def _label_counts(path: str | Path) -> dict[str, int]:
    with h5py.File(path, "r") as f:
        labels = f["label"][:]
    values, counts = np.unique(labels, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
