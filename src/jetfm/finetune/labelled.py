"""Which training jets carry a label in a data-efficiency study: a fraction chosen by a hash of event_id.

Deterministic (no RNG, no file order), the same for every method and model family, and nested: the jets of
fraction f are those whose hash falls below f, so the 1 % subset lies inside the 10 % subset. Each `subset`
index (a fine-tuning seed) salts the hash differently, so the seeds of a study also vary *which* jets are
labelled (the subset variance a small-label result must include), while every method of one seed sees the
same jets (a paired comparison); subset 0 is the historical selection. The hash is
salted differently from the train/val/test split (`jetfm.splits`), so the selection is uniform within the
training split rather than correlated with it. Used by fine-tuning (`finetune/objective.py`) and by any other
stage that compares methods at a labelled fraction (e.g. jet images).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from jetfm.splits import hash_unit_interval
from jetfm.train.data import Block, H5JetStream, OpenFiles
from jetfm.train.jagged import JaggedRows

LABEL_SALT = 0x6C6162656C6C6564  # "labelled": independent of the split hash (salt 0)
CACHE_JETS = 100_000  # labelled jets kept in memory (unpadded, ~4 kB each at JetClass multiplicities)


def subset_salt(subset: int) -> int:
    """The hash salt of labelled subset `subset` (0: LABEL_SALT, the selection before subsets existed)."""
    if subset < 0:
        raise ValueError(f"labelled subset index must be >= 0, got {subset}")
    return LABEL_SALT if subset == 0 else (LABEL_SALT + 0x9E3779B97F4A7C15 * subset) % 2**64


def labelled_selection(event_id: np.ndarray, fraction: float, salt: int = LABEL_SALT) -> np.ndarray:
    """Boolean mask of the events that are labelled at `fraction` (0 < fraction <= 1); nested in fraction."""
    if not 0 < fraction <= 1:
        raise ValueError(f"labelled fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return np.ones(len(event_id), dtype=bool)
    return hash_unit_interval(np.asarray(event_id, dtype=np.uint64), salt) < fraction


def count_labelled(
    paths: list[str | Path], fraction: float, nominal_only: bool = True, subset: int = 0
) -> int:
    """Number of (nominal) jets of the shards selected at `fraction` in labelled subset `subset`."""
    n = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            keep = labelled_selection(f["event_id"][:], fraction, subset_salt(subset))
            if nominal_only:
                keep &= f["view"][:] == -1
            n += int(keep.sum())
    return n


class LabelledStream(H5JetStream):
    """`H5JetStream` over the labelled jets only (same blocks, order and sharding; rows outside the fraction
    are dropped after each block read). The batch is cut to the number of labelled jets when that is
    smaller, so a 1 % subset of a small dataset still gives full-batch steps."""

    def __init__(
        self, paths: list[str | Path], batch_size: int, *, fraction: float, subset: int = 0, **kwargs: object
    ) -> None:
        super().__init__(paths, batch_size, **kwargs)  # type: ignore[arg-type]
        self.fraction = fraction
        self.salt = subset_salt(subset)
        self.rows = count_labelled(self.paths, fraction, self.nominal_only, subset)
        if self.rows == 0:
            raise ValueError(
                f"no labelled jets in {self.paths} at fraction {fraction} "
                f"(nominal_only={self.nominal_only}); "
                "use a larger fraction or more data"
            )
        self.batch_size = min(batch_size, self.rows)
        # A small fraction is spread evenly over every HDF5 chunk, so each epoch would read (and decompress)
        # the whole split for a few hundred jets: 3 s of loading per 0.4 s step at 1 % of 21k jets. Up to
        # CACHE_JETS labelled jets are read once, here, and kept unpadded; the block order, shuffling and
        # batches stay exactly those of the uncached stream.
        self.cache: dict[Block, JaggedRows] | None = None
        if self.rows <= CACHE_JETS:
            files = OpenFiles(self.paths, self.max_open_files)
            try:
                self.cache = {block: H5JetStream._read(self, files, block) for block in self.blocks}
            finally:
                files.close()

    def _read(self, files: OpenFiles, block: Block) -> JaggedRows:
        if self.cache is not None:
            return self.cache[block]
        return super()._read(files, block)

    def _keep(self, f: h5py.File, block: Block) -> np.ndarray | None:
        rows = slice(block.start, block.stop)
        keep = labelled_selection(f["event_id"][rows], self.fraction, self.salt)
        if self.nominal_only:
            keep &= f["view"][rows] == -1
        return keep
