"""The on-disk layouts of an HDF5 jet shard, and the one reader every consumer goes through.

Version 1 (`padded`, every shard written before the `layout_version` attribute existed): the particle
datasets are padded to P slots, `part_features` (N, P, F), `part_vectors` (N, P, 4), `part_mask` (N, P).
Version 2 (`packed`): the particles of all jets back to back, `part_features` (T, F), `part_vectors` (T, 4)
with T = sum of `n_particles` (N,), and `part_offset` (N,), each jet's first particle; no mask (it is
`slot < n_particles`). JetClass jets fill ~40 of 128 slots, so a packed shard holds ~3x fewer raw bytes
and needs no heavy filter (with LZF it is about the size of a padded + gzip shard, without any filter ~1.5x):
a loader worker reads it at LZF or memory speed where gzip costs it most of its time (bench/loader.py).
Jet-level datasets (`jet_features`, `label`, `event_id`, `view`) are the same in both.

`read_rows` returns the padded arrays of a row range from either layout, exactly as a version 1 shard
stores them, so only this module knows how particles lie on disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetfm.atomic import atomic_path

LAYOUT_ATTR = "layout_version"
PADDED, PACKED = 1, 2
LAYOUTS = {"padded": PADDED, "packed": PACKED}
PARTICLE_KEYS = ("part_features", "part_vectors", "part_mask")
PACKED_INDEX = ("n_particles", "part_offset")  # jet-level datasets of a packed shard that locate particles
# Particles per HDF5 chunk of a packed shard: ~0.6 MB of features, inside HDF5's default 1 MB chunk cache,
# so reading consecutive row blocks decompresses each chunk once; ~200 JetClass jets.
PARTICLE_CHUNK = 8192
# h5py filter options of each `preprocess.compression` value, padded layout.
COMPRESSION: dict[str, dict[str, Any]] = {
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
    "none": {},
}
# Packed layout: no gzip (its decoding is what the loader workers spend their time on) and no byte shuffle
# (HDF5's shuffle costs more to undo than LZF to decode; packed floats compress as well without it).
# Measured on preprocessed jets, read in loader-sized slices: lzf + shuffle 24k jets/s, lzf 39k,
# gzip + shuffle 26k, none 250k; sizes 1.04x, 1.03x, 0.93x, 1.46x of the padded + gzip shard.
PACKED_COMPRESSION: dict[str, dict[str, Any]] = {"lzf": {"compression": "lzf"}, "none": {}}


def filter_options(layout: int, compression: str) -> dict[str, Any]:
    """h5py filter options of a shard's datasets."""
    if layout == PADDED:
        return COMPRESSION[compression]
    if compression not in PACKED_COMPRESSION:
        raise ValueError(
            f"preprocess.compression = {compression} with preprocess.layout = packed; expected "
            f"{' or '.join(PACKED_COMPRESSION)} (packed shards are for loaders that must not pay gzip; use "
            "layout padded for the smallest files)"
        )
    return PACKED_COMPRESSION[compression]


def layout_version(f: h5py.File) -> int:
    """The shard's layout (no attribute: version 1); one clear line for a layout this jetfm cannot read."""
    version = int(f.attrs.get(LAYOUT_ATTR, PADDED))
    if version not in LAYOUTS.values():
        raise ValueError(
            f"HDF5 shard {f.filename}: attribute {LAYOUT_ATTR!r} = {version}; this jetfm reads layout "
            f"versions {sorted(LAYOUTS.values())} ({', '.join(f'{v} = {k}' for k, v in LAYOUTS.items())}): "
            "rewrite the shard with this jetfm's preprocessing or update jetfm"
        )
    return version


def max_particles(f: h5py.File) -> int:
    """P, the particle slots a padded row has."""
    if layout_version(f) == PADDED:
        return int(f["part_features"].shape[1])
    return int(f.attrs["max_particles"])


def num_features(f: h5py.File) -> int:
    return int(f["part_features"].shape[-1])


def compression_of(f: h5py.File) -> str:
    """The `preprocess.compression` value the shard's particles were written with."""
    return f["part_features"].compression or "none"


def row_chunk(f: h5py.File, default: int) -> int:
    """Jets per HDF5 chunk (whole chunks are what a loader should read), `default` if not chunked."""
    ds = f["part_features"] if layout_version(f) == PADDED else f["label"]
    return (ds.chunks or (default,))[0]


def check_particles(path: str | Path, f: h5py.File, n: int) -> None:
    """The particle datasets agree with the layout and with the shard's n jets; raise one line if not."""
    version = layout_version(f)
    if version == PADDED:
        dims = {"part_features": 3, "part_vectors": 3, "part_mask": 2}
    else:
        dims = {"part_features": 2, "part_vectors": 2, "n_particles": 1, "part_offset": 1}
    missing = [k for k in dims if k not in f]
    if missing or (version == PACKED and "max_particles" not in f.attrs):
        raise ValueError(
            f"HDF5 shard {path} (layout {version}) lacks dataset(s) {missing} or attribute 'max_particles'; "
            f"expected datasets {sorted(dims)}"
            + (" and attribute max_particles" if version == PACKED else "")
        )
    total = f["part_features"].shape[0] if version == PACKED else n
    for name, ndim in dims.items():
        rows = total if name in ("part_features", "part_vectors") else n
        ds = f[name]
        if ds.ndim != ndim or ds.shape[0] != rows:
            raise ValueError(
                f"HDF5 shard {path}: dataset {name!r} has shape {ds.shape}, "
                f"expected {ndim} dims with {rows} rows"
            )
    if f["part_vectors"].shape[-1] != 4:
        raise ValueError(
            f"HDF5 shard {path}: part_vectors must have 4 columns, got {f['part_vectors'].shape}"
        )
    if version == PADDED and f["part_mask"].dtype != np.bool_:
        raise ValueError(
            f"HDF5 shard {path}: dataset 'part_mask' has dtype {f['part_mask'].dtype}, expected bool"
        )
    if version == PACKED:
        counts = f["n_particles"][()].astype(np.int64)
        p = max_particles(f)
        if counts.size and (counts.min() < 0 or counts.max() > p or counts.sum() != total):
            raise ValueError(
                f"HDF5 shard {path}: dataset 'n_particles' ranges {counts.min()}..{counts.max()} and sums to "
                f"{counts.sum()}; expected 0..{p} (max_particles) summing to the {total} stored particles"
            )


def particle_counts(f: h5py.File, start: int, stop: int) -> np.ndarray:
    """Used particle slots of rows [start, stop) (int64)."""
    if layout_version(f) == PADDED:
        return f["part_mask"][start:stop].sum(axis=1).astype(np.int64)
    return f["n_particles"][start:stop].astype(np.int64)


def slot_mask(counts: np.ndarray, max_particles: int) -> np.ndarray:
    """(N, P) bool: slot j of jet i is used iff j < counts[i] (a jet's particles fill its first slots)."""
    return np.arange(max_particles) < np.asarray(counts)[:, None]


def read_rows(f: h5py.File, start: int, stop: int, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Datasets `keys` of rows [start, stop), particle ones padded to P as a version 1 shard stores them."""
    if layout_version(f) == PADDED:
        return {k: f[k][start:stop] for k in keys}
    out = {k: f[k][start:stop] for k in keys if k not in PARTICLE_KEYS}
    wanted = [k for k in PARTICLE_KEYS if k in keys]
    if not wanted:
        return out
    counts = f["n_particles"][start:stop].astype(np.int64)
    mask = slot_mask(counts, max_particles(f))
    if "part_mask" in keys:
        out["part_mask"] = mask
    first = int(f["part_offset"][start]) if stop > start else 0
    for k in wanted:
        if k == "part_mask":
            continue
        flat = f[k][first : first + int(counts.sum())]  # the rows' particles are contiguous, in row order
        padded = np.zeros((*mask.shape, flat.shape[1]), flat.dtype)
        padded[mask] = flat  # row-major order of the mask = jet by jet, slot by slot = the packed order
        out[k] = padded
    return out


def row_keys(f: h5py.File) -> tuple[str, ...]:
    """Every per-jet dataset as `read_rows` gives it (the padded particle arrays, not a packed index)."""
    n = f["label"].shape[0]
    if layout_version(f) == PADDED:
        return tuple(k for k, ds in f.items() if isinstance(ds, h5py.Dataset) and ds.shape[:1] == (n,))
    jets = [k for k, ds in f.items() if isinstance(ds, h5py.Dataset) and ds.shape[:1] == (n,)]
    return (*PARTICLE_KEYS, *(k for k in jets if k not in (*PACKED_INDEX, *PARTICLE_KEYS)))


def read_flat(
    f: h5py.File, start: int, stop: int, jet_keys: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Rows [start, stop) unpadded: (jet datasets `jet_keys`, particle counts, flat part_features and
    part_vectors, jets back to back). A padded shard's rows must fill their first slots, as the
    preprocessing writes them (anything else would change meaning when repacked)."""
    jets = {k: f[k][start:stop] for k in jet_keys}
    if layout_version(f) == PACKED:
        counts = f["n_particles"][start:stop].astype(np.int64)
        first = int(f["part_offset"][start]) if stop > start else 0
        last = first + int(counts.sum())
        return jets, counts, {k: f[k][first:last] for k in ("part_features", "part_vectors")}
    mask = f["part_mask"][start:stop]
    counts = mask.sum(axis=1).astype(np.int64)
    if not np.array_equal(mask, slot_mask(counts, mask.shape[1])):
        row = start + int(np.flatnonzero((mask != slot_mask(counts, mask.shape[1])).any(axis=1))[0])
        raise ValueError(
            f"HDF5 shard {f.filename}: dataset 'part_mask' row {row} has a gap; expected each jet's "
            "particles in its first slots (as jetfm's preprocessing writes them)"
        )
    return jets, counts, {k: f[k][start:stop][mask] for k in ("part_features", "part_vectors")}


def read_selected(f: h5py.File, rows: np.ndarray, keys: tuple[str, ...], block: int) -> dict[str, np.ndarray]:
    """Datasets `keys` of the sorted row indices `rows`, read a block of `block` rows at a time."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    rows = np.asarray(rows, dtype=np.int64)
    for a in range(0, int(rows[-1]) + 1 if rows.size else 0, block):
        sel = rows[(rows >= a) & (rows < a + block)] - a
        if sel.size:
            got = read_rows(f, a, a + int(sel[-1]) + 1, keys)
            for k in keys:
                parts[k].append(got[k][sel])
    return {k: np.concatenate(v) for k, v in parts.items() if v}


def check_compression(layout: str, compression: str) -> None:
    """Refuse a layout and filter that do not go together (before any work is done)."""
    filter_options(LAYOUTS[layout], compression)


class RowWriter:
    """Append padded rows (as `read_rows` returns them) to a new shard in either layout; jet datasets
    chunked along N as the preprocessing writes them. Used where rows are copied (subsets), so a copy
    keeps the layout of its source."""

    def __init__(
        self, f: h5py.File, layout: int, template: dict[str, np.ndarray], chunk: int, compression: str
    ):
        self.f, self.layout, self.rows, self.particles = f, layout, 0, 0
        opts = filter_options(layout, compression)
        f.attrs[LAYOUT_ATTR] = layout
        for k, v in template.items():
            if layout == PACKED and k in PARTICLE_KEYS:
                continue
            shape = v.shape[1:]
            f.create_dataset(k, (0, *shape), v.dtype, chunks=(chunk, *shape), maxshape=(None, *shape), **opts)
        if layout == PACKED:
            for k, dtype in (("n_particles", np.int32), ("part_offset", np.int64)):
                f.create_dataset(k, (0,), dtype, chunks=(chunk,), maxshape=(None,), **opts)
            for k in ("part_features", "part_vectors"):
                width = template[k].shape[-1]
                f.create_dataset(
                    k, (0, width), np.float32, chunks=(PARTICLE_CHUNK, width), maxshape=(None, width), **opts
                )
            f.attrs["max_particles"] = template["part_mask"].shape[1]

    def _append(self, name: str, data: np.ndarray, at: int) -> None:
        ds = self.f[name]
        ds.resize(at + len(data), axis=0)
        ds[at:] = data

    def append(self, rows: dict[str, np.ndarray]) -> None:
        n = len(rows["label"])
        for k, v in rows.items():
            if not (self.layout == PACKED and k in PARTICLE_KEYS):
                self._append(k, v, self.rows)
        if self.layout == PACKED:
            mask = rows["part_mask"]
            counts = mask.sum(axis=1)
            self._append("n_particles", counts.astype(np.int32), self.rows)
            self._append("part_offset", self.particles + np.cumsum(counts) - counts, self.rows)
            for k in ("part_features", "part_vectors"):
                self._append(k, rows[k][mask], self.particles)
            self.particles += int(counts.sum())
        self.rows += n


# --- copying a subset of rows (a class subset, an unlabelled fraction) --------------------------------------
COPY_BLOCK = 16384  # rows read at a time when copying a subset


def write_row_subset(
    src_paths: list[str], out_dir: str | Path, keep: Callable[[h5py.File], np.ndarray], what: str
) -> list[str]:
    """Copy each shard's rows where `keep(file)` is True to `out_dir/<i>.h5` (same layout, datasets and
    attrs, uncompressed; the provenance attr gains `subset` = `what`); raises if nothing at all is kept."""
    out, total = [], 0
    for i, src in enumerate(src_paths):
        dst = Path(out_dir) / f"{i:04d}.h5"
        dst.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(src, "r") as f:
            rows = np.flatnonzero(keep(f))
            if rows.size == 0:
                continue
            total += rows.size
            with atomic_path(dst) as tmp, h5py.File(tmp, "w") as g:
                names = row_keys(f)
                out_rows = RowWriter(
                    g, layout_version(f), read_rows(f, 0, 0, names), min(256, len(rows)), "none"
                )
                out_rows.append(read_selected(f, rows, names, COPY_BLOCK))
                for k, v in f.attrs.items():
                    g.attrs[k] = v
                prov = json.loads(f.attrs.get("provenance", "{}"))
                g.attrs["provenance"] = json.dumps(
                    {**prov, "subset": what, "subset_of": src, "rows": int(rows.size)}
                )
        out.append(str(dst))
    if total == 0:
        raise ValueError(f"the subset {what!r} of {src_paths} is empty: no training jet selected")
    return out
