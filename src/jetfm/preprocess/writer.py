"""HDF5 I/O of the preprocessing stage: per-chunk *parts* written by workers, final *shards* merged from them.

Two-phase on purpose (JetClass is 100M jets, ~1 TB padded): a worker never returns arrays through Dask;
it writes its chunk, already routed into (split, shard) groups, to a part file on the shared filesystem
and returns only counts. A shard is then merged from the matching groups of all parts in three steps:
`plan_shard` fixes the row order (hashed event_id, event_id, view, jet pT, eta, phi: independent of
chunking and scheduling, classes mixed in every chunk) from the jet-level arrays alone; `merge_rows`
pads and compresses one range of rows into a piece (one task per range, so workers share even a single
large shard); `assemble_shard` writes the
shard, copying the pieces' compressed chunks unchanged, or pads straight into it when there are no
pieces. Every step streams through small reused buffers, so memory stays bounded by a block of rows.
A packed shard (`preprocess.layout: packed`, layout 2 of `jetfm.shards`) is not padded: `assemble_shard`
copies each row's particles in plan order, block by block, in one task (lzf or nothing to filter, so
there is no compression worth spreading over range tasks, and packed chunks do not align with rows).
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jetfm import CLASSES
from jetfm.atomic import atomic_path
from jetfm.paths import shard_path
from jetfm.preprocess import features
from jetfm.shards import (
    COMPRESSION,
    LAYOUT_ATTR,
    LAYOUTS,
    PACKED,
    PACKED_INDEX,
    PARTICLE_CHUNK,
    filter_options,
)
from jetfm.splits import hash_unit_interval

DATASETS: tuple[str, ...] = (
    "part_features", "part_vectors", "part_mask", "jet_features", "label", "event_id", "view",
)  # fmt: skip
JET_DATASETS: tuple[str, ...] = ("jet_features", "label", "event_id", "view")
# Parts hold flat (unpadded) particles + per-jet counts; shards hold the padded tensors.
PART_DATASETS: tuple[str, ...] = (
    "part_features", "part_vectors", "n_particles", "jet_features", "label", "event_id", "view",
)  # fmt: skip
JET_PART_DATASETS: tuple[str, ...] = tuple(k for k in PART_DATASETS if not k.startswith("part_"))
ROW_CHUNK = 256  # jets per HDF5 chunk: one chunk ~ one training mini-batch read
# Rows one merge task pads and compresses (a whole number of chunks): a shard of 100k jets is ~6 tasks,
# so 2 workers stay busy even with one shard per split (70 % of the jets in the train shard).
ROWS_PER_TASK = 16384
PAD_BLOCK_ROWS = 1024  # rows padded at a time: buffers of ~11 MB at P = 128, reused, cache-friendly
SHARD_SALT = 0x5A4D  # decorrelates shard routing from the split hash
ROW_ORDER_SALT = 0x524F57  # "ROW": the row order within a shard, independent of split and shard routing
JET_PT, JET_ETA, JET_PHI = (features.JET_FEATURE_NAMES.index(k) for k in ("jet_pt", "jet_eta", "jet_phi"))


def group_name(split: str, shard: int) -> str:
    return f"{split}/{shard:04d}"


@contextlib.contextmanager
def new_h5(path: str | Path) -> Iterator[h5py.File]:
    """Write an HDF5 file atomically (temporary sibling, renamed on success); HDF5 creates the temporary."""
    with atomic_path(path) as tmp, h5py.File(tmp, "x") as f:
        yield f


def write_part(
    path: str | Path,
    groups: dict[str, dict[str, np.ndarray]],
    particles: Callable[[str], Iterable[tuple[int, np.ndarray, np.ndarray]]],
) -> None:
    """One worker chunk: a group per (split, shard); uncompressed (read once).

    `groups[name]` holds the jet arrays (`n_particles` sizes the particle datasets); `particles(name)`
    yields (offset, features, vectors) blocks that are written as they come, so no chunk-sized particle
    array is ever built.
    """
    with new_h5(path) as f:
        for name, arrays in groups.items():
            g = f.create_group(name)
            for k in JET_PART_DATASETS:
                g.create_dataset(k, data=arrays[k])
            n = int(arrays["n_particles"].sum())
            feats = g.create_dataset("part_features", (n, len(features.PARTICLE_FEATURE_NAMES)), np.float32)
            vectors = g.create_dataset("part_vectors", (n, len(features.VECTOR_NAMES)), np.float32)
            for off, fb, vb in particles(name):
                rows = np.s_[off : off + len(fb)]
                feats.write_direct(fb, dest_sel=rows)
                vectors.write_direct(vb, dest_sel=rows)


def chunk_rows(n_rows: int) -> int:
    """Rows per HDF5 chunk of a shard of n_rows jets."""
    return min(ROW_CHUNK, max(n_rows, 1))


def row_ranges(n_rows: int) -> list[tuple[int, int]]:
    """The [start, stop) row ranges a shard's merge is split into, each a whole number of HDF5 chunks."""
    step = chunk_rows(n_rows) * max(ROWS_PER_TASK // chunk_rows(n_rows), 1)
    return [(a, min(a + step, n_rows)) for a in range(0, n_rows, step)]


def plan_path(staging: str | Path, split: str, shard: int) -> Path:
    return Path(staging) / split / f"{shard:04d}.plan.h5"


def piece_path(staging: str | Path, split: str, shard: int, start: int) -> Path:
    return Path(staging) / split / f"{shard:04d}.rows-{start:012d}.h5"


def _read_jets(parts: list[str], name: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Group `name`'s jet arrays of all parts, concatenated; plus each row's part index and particle start."""
    pieces: dict[str, list[np.ndarray]] = {k: [] for k in JET_PART_DATASETS}
    part_of, start_of = [], []
    for i, path in enumerate(parts):
        with h5py.File(path, "r") as f:
            if name not in f:
                continue
            for k in JET_PART_DATASETS:
                pieces[k].append(f[name][k][()])
        counts = pieces["n_particles"][-1]
        part_of.append(np.full(len(counts), i, np.int32))
        start_of.append(features.offsets_of(counts)[:-1])
    empty = {
        "n_particles": np.zeros(0, np.int32),
        "jet_features": np.zeros((0, len(features.JET_FEATURE_NAMES)), np.float32),
        "label": np.zeros(0, np.int64),
        "event_id": np.zeros(0, np.uint64),
        "view": np.zeros(0, np.int16),
    }
    jets = {k: np.concatenate(v) if v else empty[k] for k, v in pieces.items()}
    cat = [np.concatenate(x) if x else np.zeros(0, np.int64) for x in (part_of, start_of)]
    return jets, cat[0], cat[1]


def _check_unique(jets: dict[str, np.ndarray], split: str, shard: int) -> None:
    """Sorted rows with equal (event_id, view, pT, eta, phi): the same jets entered twice."""
    jf = jets["jet_features"]
    same = np.ones(max(len(jf) - 1, 0), dtype=bool)
    for k in (jf[:, JET_PHI], jf[:, JET_ETA], jf[:, JET_PT], jets["view"], jets["event_id"]):
        same &= k[1:] == k[:-1]
    if np.any(same):
        i = int(np.flatnonzero(same)[0])
        raise ValueError(
            f"preprocess: jet (event_id={int(jets['event_id'][i])}, view={int(jets['view'][i])}, "
            f"pt={float(jf[i, JET_PT]):.3f}) appears twice in {split}/{shard:04d}; "
            "the same events entered from two files"
        )


def plan_shard(parts: list[str], split: str, shard: int, staging: str) -> str:
    """Fix the row order of one shard and record where every row's particles are; returns the plan file.

    Content-based row order: a hash of event_id first, then (event_id, view) and the jet axis, because
    several jets of one event share its event_id (the simulation keeps every jet in the window).
    Independent of file names, chunking and scheduling; two distinct jets never share (event_id, view, pT,
    eta, phi), so a repeat means the same jets entered twice (e.g. one file under two names): an error,
    not a silent doubling. The hash puts the events in random order, so every 256-row chunk mixes input
    files and classes: ordered by event_id, each chunk held one class (ids are per input file), and a
    loader's shuffle buffer of 16 blocks saw a few classes at a time, which cost the fine-tuning on 100 %
    of the labels 8 points of accuracy against 10 % in the pretrain-demo preset. An event's views stay
    contiguous. Only jet-level arrays are read, so planning is cheap and every merge task shares it.
    """
    jets, part_of, start_of = _read_jets(parts, group_name(split, shard))
    jf = jets["jet_features"]
    mixed = hash_unit_interval(jets["event_id"], ROW_ORDER_SALT)
    keys = [jf[:, JET_PHI], jf[:, JET_ETA], jf[:, JET_PT], jets["view"], jets["event_id"], mixed]
    order = np.lexsort(keys)
    jets = {k: v[order] for k, v in jets.items()}
    _check_unique(jets, split, shard)
    path = plan_path(staging, split, shard)
    with new_h5(path) as f:
        for k, v in jets.items():
            f.create_dataset(k, data=v)
        f.create_dataset("part", data=part_of[order])
        f.create_dataset("start", data=start_of[order])
        f.attrs["parts"] = json.dumps(parts)
        f.attrs.update(group=group_name(split, shard), split=split, shard=shard)
    return str(path)


def _read_block(
    groups: dict[int, h5py.Group],
    part_of: np.ndarray,
    local: np.ndarray,
    counts: np.ndarray,
    buf: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Particles of one block of rows, read as one slice per part into `buf` (grown if too small).

    Returns (features, vectors, each row's start in them). Rows of one part are mostly contiguous (event
    ids follow the entries), so a slice holds little beyond what the rows need.
    """
    spans = {}
    for i in np.unique(part_of).tolist():
        mine = part_of == i
        spans[i] = (mine, int(local[mine].min()), int((local[mine] + counts[mine]).max()))
    total = sum(hi - lo for _, lo, hi in spans.values())
    if total > len(buf["part_features"]):
        buf.update({k: np.empty((total, v.shape[1]), v.dtype) for k, v in buf.items()})
    row_start = np.empty(len(part_of), np.int64)
    base = 0
    for i, (mine, lo, hi) in spans.items():
        for k, dest in buf.items():
            groups[i][k].read_direct(dest, np.s_[lo:hi], np.s_[base : base + hi - lo])
        row_start[mine] = local[mine] - lo + base
        base += hi - lo
    return buf["part_features"], buf["part_vectors"], row_start


def _create_padded(
    f: h5py.File, n_rows: int, n_chunk: int, max_particles: int, n_feat: int, compression: str
) -> dict[str, h5py.Dataset]:
    """The three padded datasets of a shard (or of a piece of one), chunked as the final shard is."""
    shapes = {
        "part_features": ((max_particles, n_feat), np.float32),
        "part_vectors": ((max_particles, len(features.VECTOR_NAMES)), np.float32),
        "part_mask": ((max_particles,), np.bool_),
    }
    out = {}
    for k, (shape, dtype) in shapes.items():
        out[k] = f.create_dataset(
            k, (n_rows, *shape), dtype, chunks=(n_chunk, *shape), maxshape=(None, *shape),
            **COMPRESSION[compression],
        )  # fmt: skip
    return out


def _pad_rows(
    plan_file: str, start: int, stop: int, out: dict[str, h5py.Dataset], max_particles: int, n_feat: int
) -> None:
    """Pad plan rows [start, stop) into the padded datasets `out` (row 0 of `out` = plan row `start`).

    Block by block (whole chunks): read the block's particles, pad, write, all in small reused buffers,
    so memory and memory bandwidth stay low when several workers share a node and nothing is allocated
    per block (Dask workers hand freed memory back to the OS, so fresh memory costs page faults).
    """
    with h5py.File(plan_file, "r") as plan:
        parts, name = json.loads(plan.attrs["parts"]), plan.attrs["group"]
        part_of, local = plan["part"][start:stop], plan["start"][start:stop]
        counts = plan["n_particles"][start:stop].astype(np.int64)
    n_chunk = out["part_mask"].chunks[0]
    block = n_chunk * max(PAD_BLOCK_ROWS // n_chunk, 1)
    n_vec = len(features.VECTOR_NAMES)
    read_buf = {
        "part_features": np.empty((block * max_particles, n_feat), np.float32),
        "part_vectors": np.empty((block * max_particles, n_vec), np.float32),
    }
    gather = (np.empty_like(read_buf["part_features"]), np.empty_like(read_buf["part_vectors"]))
    bufs = features.PaddedJets(
        np.empty((block, max_particles, n_feat), np.float32),
        np.empty((block, max_particles, n_vec), np.float32),
        np.empty((block, max_particles), bool),
        np.empty(0, np.int64),
    )
    shuffled = np.empty(bufs.part_features[:n_chunk].nbytes, np.uint8)
    with contextlib.ExitStack() as stack:
        groups = {i: stack.enter_context(h5py.File(parts[i], "r"))[name] for i in np.unique(part_of).tolist()}
        for a in range(0, stop - start, block):
            b = min(a + block, stop - start)
            feats, vectors, row_start = _read_block(groups, part_of[a:b], local[a:b], counts[a:b], read_buf)
            features.pad_into(counts[a:b], row_start, feats, vectors, bufs, gather)
            for k, ds in out.items():
                _write_rows(ds, getattr(bufs, k), a, b - a, shuffled)


def _create_packed(f: h5py.File, n_particles: int, n_feat: int, compression: str) -> dict[str, h5py.Dataset]:
    """The two flat particle datasets of a packed shard, chunked along the particles."""
    out = {}
    for k, width in (("part_features", n_feat), ("part_vectors", len(features.VECTOR_NAMES))):
        out[k] = f.create_dataset(
            k, (n_particles, width), np.float32, chunks=(max(min(PARTICLE_CHUNK, n_particles), 1), width),
            maxshape=(None, width), **filter_options(PACKED, compression),
        )  # fmt: skip
    return out


def _pack_rows(plan_file: str, out: dict[str, h5py.Dataset]) -> None:
    """Copy every plan row's particles, rows in plan order, into the flat datasets `out` (a packed shard).

    Block by block as `_pad_rows`: one slice per part into a reused buffer, a gather into row order, one
    write at the running particle offset; memory stays bounded by a block of rows.
    """
    with h5py.File(plan_file, "r") as plan:
        parts, name = json.loads(plan.attrs["parts"]), plan.attrs["group"]
        part_of, local = plan["part"][()], plan["start"][()]
        counts = plan["n_particles"][()].astype(np.int64)
    read_buf = {k: np.empty((0, ds.shape[1]), np.float32) for k, ds in out.items()}
    gather = {k: np.empty((0, ds.shape[1]), np.float32) for k, ds in out.items()}
    written = 0
    with contextlib.ExitStack() as stack:
        groups = {i: stack.enter_context(h5py.File(parts[i], "r"))[name] for i in np.unique(part_of).tolist()}
        for a in range(0, len(counts), PAD_BLOCK_ROWS):
            rows = np.s_[a : a + PAD_BLOCK_ROWS]
            c = counts[rows]
            feats, vectors, row_start = _read_block(groups, part_of[rows], local[rows], c, read_buf)
            offsets = features.offsets_of(c)
            src = np.repeat(row_start - offsets[:-1], c) + np.arange(offsets[-1], dtype=np.int64)
            for k, flat in (("part_features", feats), ("part_vectors", vectors)):
                if len(gather[k]) < len(src):
                    gather[k] = np.empty((len(src), flat.shape[1]), np.float32)
                np.take(flat, src, axis=0, out=gather[k][: len(src)])
                out[k].write_direct(gather[k][: len(src)], dest_sel=np.s_[written : written + len(src)])
            written += len(src)
    if written != out["part_features"].shape[0]:
        raise RuntimeError(
            f"packing {plan_file}: wrote {written} particles, planned {out['part_features'].shape[0]}"
        )


def _write_rows(ds: h5py.Dataset, buf: np.ndarray, row: int, m: int, shuffled: np.ndarray) -> None:
    """Write buf[:m] (whole chunks, but for the dataset's last one) at `row` of a chunked dataset.

    gzip + shuffle chunks are filtered here, exactly as HDF5's filters do (byte planes, then zlib at the
    dataset's level: the stored bytes are identical) but into reused buffers: HDF5 allocates two chunk-
    sized buffers per chunk, which Dask workers (MALLOC_TRIM_THRESHOLD_) map fresh every time.
    """
    if not (ds.compression == "gzip" and ds.shuffle):
        ds.write_direct(buf[:m], dest_sel=np.s_[row : row + m])
        return
    n_chunk, level, zeros = ds.chunks[0], ds.compression_opts, (0,) * (ds.ndim - 1)
    for c in range(0, m, n_chunk):
        rows = buf[c : c + n_chunk]
        rows[m - c :] = 0  # an edge chunk is stored whole, zero (the fill value) beyond the last row
        size = rows.itemsize
        if size > 1:  # shuffle: byte j of every element, then byte j + 1, ...
            planes = shuffled[: rows.nbytes].reshape(size, -1)
            planes[:] = rows.reshape(-1).view(np.uint8).reshape(-1, size).T
            rows = planes
        ds.id.write_direct_chunk((row + c, *zeros), zlib.compress(rows, level))


def merge_rows(
    plan_file: str,
    start: int,
    stop: int,
    n_chunk: int,
    max_particles: int,
    n_feat: int,
    compression: str = "gzip",
) -> tuple[int, str]:
    """Pad and compress rows [start, stop) of a planned shard into a piece file; returns (start, path).

    One Dask task per row range, so a large shard keeps every worker busy; the piece is chunked and
    filtered as the shard is, and the assembly copies its compressed chunks unchanged.
    """
    with h5py.File(plan_file, "r") as plan:
        split, shard = plan.attrs["split"], int(plan.attrs["shard"])
    path = piece_path(Path(plan_file).parents[1], split, shard, start)
    with new_h5(path) as f:
        out = _create_padded(f, stop - start, n_chunk, max_particles, n_feat, compression)
        _pad_rows(plan_file, start, stop, out, max_particles, n_feat)
    return start, str(path)


def _copy_chunks(src: h5py.Dataset, dst: h5py.Dataset, offset: int) -> None:
    """Copy every stored chunk of `src` into `dst` at row `offset`, still compressed (no re-filtering)."""
    n_chunk = src.chunks[0]
    zeros = (0,) * (src.ndim - 1)
    for a in range(0, src.shape[0], n_chunk):
        mask, data = src.id.read_direct_chunk((a, *zeros))
        dst.id.write_direct_chunk((offset + a, *zeros), data, mask)


def assemble_shard(
    plan_file: str,
    pieces: list[tuple[int, str]] | None,
    out_dir: str,
    attrs: dict[str, Any],
    max_particles: int,
    n_feat: int,
    compression: str = "gzip",
    layout: str = "padded",
) -> dict[str, Any]:
    """Write one final shard from its plan (jet arrays) and pieces ((first row, file) of padded chunks).

    The pieces' compressed chunks are copied as they are, so the shard holds the same chunks a single
    writer produces. `pieces=None` (in-process, uncompressed, a shard of one row range, where a copy
    would cost more than it spreads, or a packed shard) pads (or packs) straight into the shard.
    """
    with h5py.File(plan_file, "r") as plan:
        split, shard = str(plan.attrs["split"]), int(plan.attrs["shard"])
        jets = {k: plan[k][()] for k in (*JET_DATASETS, "n_particles")}
    n = len(jets["label"])
    n_chunk = chunk_rows(n)
    per_class = np.bincount(jets["label"], minlength=len(CLASSES))
    counts = {
        "split": split,
        "shard": shard,
        "n_jets": n,
        "per_class": {c: int(v) for c, v in zip(CLASSES, per_class, strict=True) if v},
    }
    provenance = dict(attrs["provenance"], shard=counts, layout=layout)
    final = shard_path(out_dir, split, shard)
    with new_h5(final) as f:
        if layout == "packed":
            n_particles = jets["n_particles"].astype(np.int64)
            _pack_rows(plan_file, _create_packed(f, int(n_particles.sum()), n_feat, compression))
            jets = dict(jets, part_offset=features.offsets_of(n_particles)[:-1])
            jet_keys = (*JET_DATASETS, *PACKED_INDEX)
        else:
            padded = _create_padded(f, n, n_chunk, max_particles, n_feat, compression)
            if pieces is None:
                _pad_rows(plan_file, 0, n, padded, max_particles, n_feat)
            else:
                for a, path in pieces:
                    with h5py.File(path, "r") as piece:
                        for k, ds in padded.items():
                            _copy_chunks(piece[k], ds, a)
            jet_keys = JET_DATASETS
        for k in jet_keys:
            data = jets[k]
            f.create_dataset(
                k, data=data, chunks=(n_chunk, *data.shape[1:]), maxshape=(None, *data.shape[1:]),
                **filter_options(LAYOUTS[layout], compression),
            )  # fmt: skip
        for k, v in attrs.items():
            if k != "provenance":
                f.attrs[k] = v
        f.attrs[LAYOUT_ATTR] = LAYOUTS[layout]
        f.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
    for path in [*(p for _, p in pieces or []), plan_file]:
        Path(path).unlink()
    counts["path"] = str(final)
    return counts
