"""HDF5 I/O of the preprocessing stage: per-chunk *parts* written by workers, final *shards* merged from them.

Two-phase on purpose (JetClass is 100M jets, ~1 TB padded): a worker never returns arrays through Dask;
it writes its chunk, already routed into (split, shard) groups, to a part file on the shared filesystem
and returns only counts. Each final shard is then merged independently (in parallel) from the matching
groups of all parts, sorted by (event_id, view, jet pT, eta, phi) so the result does not depend on
chunking or scheduling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetfm import CLASSES
from jetfm.atomic import atomic_path
from jetfm.preprocess import features
from jetfm.splits import SPLITS

DATASETS: tuple[str, ...] = (
    "part_features", "part_vectors", "part_mask", "jet_features", "label", "event_id", "view",
)  # fmt: skip
# Parts hold flat (unpadded) particles + per-jet counts; shards hold the padded tensors.
PART_DATASETS: tuple[str, ...] = (
    "part_features", "part_vectors", "n_particles", "jet_features", "label", "event_id", "view",
)  # fmt: skip
ROW_CHUNK = 256  # jets per HDF5 chunk: one chunk ~ one training mini-batch read
SHARD_SALT = 0x5A4D
JET_PT, JET_ETA, JET_PHI = (features.JET_FEATURE_NAMES.index(k) for k in ("jet_pt", "jet_eta", "jet_phi"))
COMPRESSION: dict[str, dict[str, Any]] = {
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
    "none": {},
}  # decorrelates shard routing from the split hash


def shard_path(out_dir: str | Path, split: str, shard: int) -> Path:
    """`{out_dir}/{split}/{shard:04d}.h5` (design.md)."""
    return Path(out_dir) / split / f"{shard:04d}.h5"


def group_name(split: str, shard: int) -> str:
    return f"{split}/{shard:04d}"


def write_part(path: str | Path, groups: dict[str, dict[str, np.ndarray]]) -> None:
    """One worker chunk: a group per (split, shard) with the row arrays; uncompressed (read once)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, arrays in groups.items():
            g = f.create_group(name)
            for k in PART_DATASETS:
                g.create_dataset(k, data=arrays[k])


def _empty(n_feat: int, n_jet: int) -> dict[str, np.ndarray]:
    return {
        "part_features": np.zeros((0, n_feat), np.float32),
        "part_vectors": np.zeros((0, 4), np.float32),
        "n_particles": np.zeros(0, np.int32),
        "jet_features": np.zeros((0, n_jet), np.float32),
        "label": np.zeros(0, np.int64),
        "event_id": np.zeros(0, np.uint64),
        "view": np.zeros(0, np.int16),
    }


def read_group(parts: list[str], name: str, n_feat: int, n_jet: int) -> dict[str, np.ndarray]:
    """Concatenate group `name` of every part (parts without it contribute nothing)."""
    pieces: dict[str, list[np.ndarray]] = {k: [] for k in PART_DATASETS}
    for p in parts:
        with h5py.File(p, "r") as f:
            if name not in f:
                continue
            for k in PART_DATASETS:
                pieces[k].append(f[name][k][()])
    empty = _empty(n_feat, n_jet)
    return {k: np.concatenate(v) if v else empty[k] for k, v in pieces.items()}


def merge_shard(
    parts: list[str],
    split: str,
    shard: int,
    out_dir: str,
    attrs: dict[str, Any],
    max_particles: int,
    n_feat: int,
    n_jet: int,
    compression: str = "gzip",
) -> dict[str, Any]:
    """Write one final shard from all parts, sorted by (event_id, view, jet axis); return its counts.

    Runs on a Dask worker (one task per shard) or in-process. Duplicate (event_id, view) rows mean the same
    jets entered twice (e.g. one file under two names): an error, not a silent doubling.
    """
    flat = read_group(parts, group_name(split, shard), n_feat, n_jet)
    # Content-based row order: (event_id, view) and then the jet axis, because several jets of one event
    # share its event_id (the simulation keeps every jet in the window). Independent of file names,
    # chunking and scheduling; two distinct jets never share (event_id, view, pT, eta, phi).
    jf = flat["jet_features"]
    key = [jf[:, JET_PHI], jf[:, JET_ETA], jf[:, JET_PT], flat["view"], flat["event_id"]]
    order = np.lexsort(key)
    pidx = features.particle_index(flat["n_particles"], order)
    padded = features.pad_particles(
        flat["n_particles"][order], flat["part_features"][pidx], flat["part_vectors"][pidx], max_particles
    )
    rows = {k: flat[k][order] for k in ("jet_features", "label", "event_id", "view")}
    rows.update(
        part_features=padded.part_features, part_vectors=padded.part_vectors, part_mask=padded.part_mask
    )
    same = np.ones(max(len(order) - 1, 0), dtype=bool)
    for k in key:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
    if np.any(same):
        i = int(np.flatnonzero(same)[0])
        raise ValueError(
            f"preprocess: jet (event_id={int(rows['event_id'][i])}, view={int(rows['view'][i])}, "
            f"pt={float(rows['jet_features'][i, JET_PT]):.3f}) appears twice in {split}/{shard:04d}; "
            "the same events entered from two files"
        )
    n = len(order)
    per_class = {
        c: int(v) for c, v in zip(CLASSES, np.bincount(rows["label"], minlength=len(CLASSES)), strict=True)
    }
    counts = {
        "split": split,
        "shard": shard,
        "n_jets": n,
        "per_class": {c: v for c, v in per_class.items() if v},
    }
    provenance = dict(attrs["provenance"], shard=counts)
    final = shard_path(out_dir, split, shard)
    with atomic_path(final) as tmp, h5py.File(tmp, "w") as f:
        for k in DATASETS:
            data = rows[k]
            chunks = (min(ROW_CHUNK, max(n, 1)), *data.shape[1:])
            f.create_dataset(
                k, data=data, chunks=chunks, maxshape=(None, *data.shape[1:]), **COMPRESSION[compression]
            )
        for k, v in attrs.items():
            if k != "provenance":
                f.attrs[k] = v
        f.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
    counts["path"] = str(final)
    return counts


def expected_shards(out_dir: str | Path, shards_per_split: int) -> list[Path]:
    """Every shard path one run writes (known before the run, as Snakemake needs)."""
    return [shard_path(out_dir, s, i) for s in SPLITS for i in range(shards_per_split)]
