"""HDF5 shard loader: contiguous chunk-aligned block reads, seeded shard + buffer shuffling, DDP sharding.

Why not a map-style Dataset with random row indices: HDF5 reads whole chunks, so random single rows read each
chunk ~chunk-length times. Here an epoch is a permutation (seeded by seed and epoch) of blocks of whole
chunks; rank r of W takes blocks r, r+W, ... (no overlap), its DataLoader workers split those again; each
worker pools `shuffle_buffer` rows, permutes them and cuts batches (with `bucket_by_length`, from the rows
sorted by multiplicity, then in a seeded random batch order). The pool holds the jets unpadded (`JaggedRows`,
read by `shards.read_flat` from a padded or a packed shard) and each batch is padded once, to its longest jet
(P is e.g. 128; a JetClass jet has ~30-60), which is most of the CPU speed; bucketing brings that longest jet
close to the batch's typical one.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from jetfm import shards
from jetfm.train.jagged import JaggedRows

ARRAYS = ("part_features", "part_vectors", "part_mask", "jet_features", "label")
JET_ARRAYS = ("jet_features", "label")  # the per-jet arrays of a batch; the particle ones come padded
EXPECTED = {  # jet-level datasets, the same in every layout; shards.check_particles checks the rest
    "jet_features": (2, np.floating),
    "label": (1, np.integer),
    "view": (1, np.integer),
}


@dataclasses.dataclass(frozen=True)
class ShardMeta:
    """What the model needs to know about the data, checked to agree across all shards."""

    num_features: int
    num_jet_features: int
    max_particles: int
    classes: tuple[str, ...]
    feature_names: Any


def _check_file(path: Path, f: h5py.File) -> int:
    shards.layout_version(f)
    missing = [k for k in EXPECTED if k not in f]
    if missing:
        raise ValueError(f"HDF5 shard {path} lacks dataset(s) {missing}; expected {sorted(EXPECTED)}")
    n = f["label"].shape[0]
    for name, (ndim, kind) in EXPECTED.items():
        ds = f[name]
        if ds.ndim != ndim or ds.shape[0] != n:
            raise ValueError(
                f"HDF5 shard {path}: dataset {name!r} has shape {ds.shape}, "
                f"expected {ndim} dims with {n} rows"
            )
        if not np.issubdtype(ds.dtype, kind):
            raise ValueError(
                f"HDF5 shard {path}: dataset {name!r} has dtype {ds.dtype}, expected {kind.__name__}"
            )
    shards.check_particles(path, f, n)
    for name in ("part_features", "part_vectors"):
        if not np.issubdtype(f[name].dtype, np.floating):
            raise ValueError(
                f"HDF5 shard {path}: dataset {name!r} has dtype {f[name].dtype}, expected floating"
            )
    return n


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    return value


def _check_labels(path: Path, labels: np.ndarray, n_classes: int) -> None:
    """Labels index the class list: a value outside [0, n_classes) would fail deep in the loss, unnamed."""
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"HDF5 shard {path}: dataset 'label' has {int(bad.sum())} value(s) outside [0, {n_classes}) "
            f"(first: {int(labels[row])} at row {row}); expected class indices into the {n_classes} classes"
        )


def read_meta(paths: list[str | Path]) -> ShardMeta:
    """Shapes and class list of the shards; raise if any file is missing, malformed or disagrees."""
    if not paths:
        raise ValueError("no HDF5 shards given")
    metas = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"HDF5 shard {path} does not exist")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"HDF5 shard {path} is unreadable: {exc}") from exc
        with f:
            _check_file(path, f)
            classes = _decode(f.attrs.get("classes"))
            if classes is None:
                from jetfm import CLASSES

                classes = list(CLASSES)
            _check_labels(path, f["label"][:], len(classes))
            metas.append(
                ShardMeta(
                    num_features=shards.num_features(f),
                    num_jet_features=f["jet_features"].shape[1],
                    max_particles=shards.max_particles(f),
                    classes=tuple(classes),
                    feature_names=_decode(f.attrs.get("feature_names")),
                )
            )
    first = metas[0]
    for path, m in zip(paths[1:], metas[1:], strict=True):
        for key in ("num_features", "num_jet_features", "classes", "feature_names"):
            if getattr(m, key) != getattr(first, key):
                raise ValueError(
                    f"HDF5 shard {path}: {key} = {getattr(m, key)} differs from "
                    f"{paths[0]} ({getattr(first, key)})"
                )
    return first


class OpenFiles:
    """At most `limit` shards open at once, least recently used closed first: an epoch over thousands of
    shards (10^8 jets) stays under the process's open-file limit (each DataLoader worker has its own)."""

    def __init__(self, paths: list[str], limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_open_files must be >= 1, got {limit}")
        self.paths, self.limit = paths, limit
        self.open: collections.OrderedDict[int, h5py.File] = collections.OrderedDict()

    def get(self, shard: int) -> h5py.File:
        f = self.open.get(shard)
        if f is None:
            while len(self.open) >= self.limit:
                self.open.popitem(last=False)[1].close()
            f = self.open[shard] = h5py.File(self.paths[shard], "r")
        self.open.move_to_end(shard)
        return f

    def close(self) -> None:
        while self.open:
            self.open.popitem()[1].close()


@dataclasses.dataclass(frozen=True)
class Block:
    shard: int
    start: int
    stop: int


def trim_padding(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cut the particle axis to the last slot any jet of the batch uses (at least 1)."""
    used = np.flatnonzero(batch["part_mask"].any(axis=0))
    n = int(used[-1]) + 1 if used.size else 1
    for key in ("part_features", "part_vectors", "part_mask"):
        batch[key] = batch[key][:, :n]
    return batch


def _bucket(
    perm: np.ndarray, counts: np.ndarray, n: int, bs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder the first `n` rows of the permutation `perm` by particle count so each batch holds neighbours
    in multiplicity (its padded length drops from the max of `bs` random jets towards their typical length),
    and return it with a seeded random order of the batches. Rows past `n` (the carried-over rest) stay."""
    by_length = np.argsort(counts[perm[:n]], kind="stable")
    return np.concatenate([perm[:n][by_length], perm[n:]]), rng.permutation(n // bs)


def to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class H5JetStream(IterableDataset):
    """Infinite-free, epoch-wise stream of trimmed batches for one DDP rank (set `epoch` before iterating)."""

    def __init__(
        self,
        paths: list[str | Path],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        block_size: int = 256,
        shuffle_buffer: int = 4096,
        nominal_only: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        bucket_by_length: bool = False,
        max_open_files: int = 64,
    ) -> None:
        super().__init__()
        self.paths = [str(p) for p in paths]
        self.meta = read_meta(self.paths)
        self.batch_size = batch_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.bucket_by_length = bucket_by_length
        self.max_open_files = max_open_files
        self.nominal_only = nominal_only
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.blocks: list[Block] = []
        self.rows = 0  # usable rows (nominal-only filter applied)
        self.nominal_rows = 0  # rows with view == -1, whatever the filter
        for i, path in enumerate(self.paths):
            with h5py.File(path, "r") as f:
                n = f["label"].shape[0]
                chunk = shards.row_chunk(f, block_size)
                view = f["view"][:]
            step = max(chunk, -(-block_size // chunk) * chunk)  # whole chunks only
            self.blocks += [Block(i, s, min(s + step, n)) for s in range(0, n, step)]
            nominal = int((view == -1).sum())
            self.nominal_rows += nominal
            self.rows += nominal if nominal_only else n
        if self.rows == 0:
            raise ValueError(f"no usable rows in {self.paths} (nominal_only={nominal_only})")

    def epoch_blocks(self, epoch: int, worker: int = 0, num_workers: int = 1) -> list[Block]:
        """This rank's (and worker's) blocks for `epoch`: a seeded permutation, then strided."""
        order = np.arange(len(self.blocks))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        mine = order[self.rank :: self.world_size][worker::num_workers]
        return [self.blocks[i] for i in mine]

    def _keep(self, f: h5py.File, block: Block) -> np.ndarray | None:
        """Which rows of the block the stream uses (None: all)."""
        return f["view"][block.start : block.stop] == -1 if self.nominal_only else None

    def _read(self, files: OpenFiles, block: Block) -> JaggedRows:
        f = files.get(block.shard)
        rows = JaggedRows(*shards.read_flat(f, block.start, block.stop, JET_ARRAYS))
        keep = self._keep(f, block)
        return rows if keep is None or keep.all() else rows.take(np.flatnonzero(keep))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        blocks = self.epoch_blocks(self.epoch, worker, num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 1])
        files = OpenFiles(self.paths, self.max_open_files)
        pool: list[JaggedRows] = []
        pooled = 0
        bs = self.batch_size
        try:
            for i, block in enumerate(blocks):
                part = self._read(files, block)
                pool.append(part)
                pooled += len(part)
                last = i == len(blocks) - 1
                if pooled < max(self.shuffle_buffer, bs) and not last:
                    continue
                rows = JaggedRows.concat(pool)
                n_full = pooled // bs
                order = np.arange(n_full)
                if self.shuffle_buffer:
                    perm = rng.permutation(pooled)
                    if self.bucket_by_length and n_full > 1:
                        perm, order = _bucket(perm, rows.counts, n_full * bs, bs, rng)
                    rows = rows.take(perm)
                for b in order:
                    yield to_torch(rows.rows(b * bs, (b + 1) * bs).padded())
                pool, pooled = [rows.rows(n_full * bs, pooled)], pooled - n_full * bs
            if pooled and not self.drop_last:
                yield to_torch(JaggedRows.concat(pool).padded())
        finally:
            files.close()


def make_loader(stream: H5JetStream, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """DataLoader over a stream that already batches (batch_size=None); workers split the rank's blocks.

    The loader gets its own generator: every new iterator draws a base seed from it, and drawing that from
    the global torch RNG (the default) would shift the dropout stream whenever an iterator is rebuilt (each
    epoch, each evaluation, and once more after a resume), so a resumed run would diverge. The stream's
    order comes from its own seeded numpy generators, so the loader's seed only feeds unused worker seeds.
    """
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
        generator=torch.Generator().manual_seed(stream.seed),
    )


def mean_particles(paths: list[str | Path], nominal_only: bool = True, block: int = 65536) -> float:
    """Mean used particle slots per jet, streamed in blocks of rows (never a whole `part_mask` in memory)."""
    total = jets = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            for a in range(0, f["label"].shape[0], block):
                used = shards.particle_counts(f, a, a + block)
                if nominal_only:
                    used = used[f["view"][a : a + block] == -1]
                total, jets = total + int(used.sum()), jets + len(used)
    return total / max(jets, 1)


def read_arrays(
    paths: list[str | Path], keys: tuple[str, ...], nominal_only: bool = True
) -> dict[str, np.ndarray]:
    """Whole columns of all shards (small ones: labels, jet features), nominal rows only if asked."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for path in paths:
        with h5py.File(path, "r") as f:
            keep = f["view"][:] == -1 if nominal_only else slice(None)
            rows = shards.read_rows(f, 0, f["label"].shape[0], keys)
            for k in keys:
                parts[k].append(rows[k][keep])
    return {k: np.concatenate(v) for k, v in parts.items()}
