"""The coffea processor: one chunk of JetClass jets -> ParT inputs, routed to (split, shard) groups.

`process` is stateless apart from its configuration: it reads the chunk's branches (BaseSchema, flat
TTree), computes features (`features.py`), assigns splits by a hash of event_id, writes one part file
(flat, unpadded particles, so parts are ~P/<n> times smaller than padded; the merge pads) and returns only
counts: a list of one record, which coffea's accumulate concatenates.
A malformed chunk (inconsistent particle counts, NaN inputs, not exactly one label, a basket that fails
to decompress) is reported as an error record naming file and entries, never a crash in the middle of
other files' work; the driver then fails or skips the whole file.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor

from jetfm import CLASSES
from jetfm.jetclass import (
    EVENT_ID_BRANCH,
    JET_BRANCHES,
    LABEL_BRANCHES,
    PARTICLE_BRANCHES,
    VIEW_BRANCH,
)
from jetfm.preprocess import features
from jetfm.preprocess.inputs import InputFile, InputFileError
from jetfm.preprocess.writer import SHARD_SALT, group_name, write_part
from jetfm.splits import SPLITS, assign_splits, hash_unit_interval

NOMINAL_VIEW = -1


def shard_of(event_id: np.ndarray, n_shards: int, salt: int) -> np.ndarray:
    """Shard within a split from a second hash of event_id: views of one event share a shard too."""
    u = hash_unit_interval(event_id, salt ^ SHARD_SALT)
    return np.minimum((u * n_shards).astype(np.int64), n_shards - 1)


def part_name(filename: str, entrystart: int) -> str:
    return f"{hashlib.blake2b(filename.encode(), digest_size=8).hexdigest()}_{entrystart:012d}.h5"


@dataclass(frozen=True)
class Chunk:
    """Columns of one chunk as numpy arrays (flat particles + per-jet counts)."""

    counts: np.ndarray
    particles: dict[str, np.ndarray]
    jets: dict[str, np.ndarray]
    labels: np.ndarray  # (N, C) one-hot in JetClass order
    event_id: np.ndarray | None
    view: np.ndarray | None


def read_chunk(events: Any, info: InputFile, entrystart: int) -> Chunk:
    """Materialise the branches we use; any read failure becomes an InputFileError naming the branch."""
    where = f"entries {entrystart}..{entrystart + len(events)}"
    particles: dict[str, np.ndarray] = {}
    counts = None
    for b in PARTICLE_BRANCHES:
        try:
            arr = events[b]
            c = np.asarray(ak.num(arr, axis=1), dtype=np.int64)
            flat = ak.to_numpy(ak.flatten(arr, axis=1))
        except Exception as exc:
            raise InputFileError(info.path, f"{where}: cannot read: {type(exc).__name__}: {exc}", b) from exc
        if counts is None:
            counts = c
        elif not np.array_equal(c, counts):
            jet = int(np.flatnonzero(c != counts)[0])
            raise InputFileError(
                info.path, f"{where}: jet {entrystart + jet} has {c[jet]} entries, part_px has {counts[jet]}",
                b, "the same particle count in every part_* branch",
            )  # fmt: skip
        particles[b] = flat
    jets: dict[str, np.ndarray] = {}
    flat_names = list(JET_BRANCHES) + list(LABEL_BRANCHES)
    if info.has_event_id:
        flat_names.append(EVENT_ID_BRANCH)
    if info.has_view:
        flat_names.append(VIEW_BRANCH)
    for b in flat_names:
        try:
            jets[b] = ak.to_numpy(events[b])
        except Exception as exc:
            raise InputFileError(info.path, f"{where}: cannot read: {type(exc).__name__}: {exc}", b) from exc
    for b in (*PARTICLE_BRANCHES, *JET_BRANCHES):
        arr = particles.get(b, jets.get(b))
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise InputFileError(info.path, f"{where}: non-finite value (NaN or inf)", b, "finite numbers")
    labels = np.stack([jets.pop(b) for b in LABEL_BRANCHES], axis=1)
    return Chunk(
        counts=counts if counts is not None else np.zeros(len(events), np.int64),
        particles=particles,
        jets=jets,
        labels=labels,
        event_id=jets.pop(EVENT_ID_BRANCH, None),
        view=jets.pop(VIEW_BRANCH, None),
    )


def _labels(c: Chunk, info: InputFile, start: int) -> np.ndarray:
    """Integer labels; a jet without exactly one label is an error naming its entry."""
    label, bad = features.labels_from_onehot(c.labels)
    if len(bad):
        row = int(bad[0])
        raise InputFileError(
            info.path, f"entries {start}..{start + len(label)}: {len(bad)} jet(s) without exactly one label, "
            f"first entry {start + row} has {dict(zip(LABEL_BRANCHES, c.labels[row].tolist(), strict=True))}",
            "label_*", "exactly one non-zero label_* per jet",
        )  # fmt: skip
    return label


def _event_ids(c: Chunk, info: InputFile, start: int) -> np.ndarray:
    """The file's event_id branch, or the derived id (prefix << 32 | entry) of files without one."""
    if c.event_id is not None:
        return c.event_id.astype(np.uint64)
    n = len(c.counts)
    return (np.uint64(info.id_prefix) << np.uint64(32)) | np.arange(start, start + n, dtype=np.uint64)


def _views(c: Chunk, info: InputFile, start: int) -> np.ndarray:
    """int16 view index of views files (checked), -1 (nominal) otherwise."""
    n = len(c.counts)
    if c.view is None:
        return np.full(n, NOMINAL_VIEW, np.int16)
    if np.any((c.view < 0) | (c.view > np.iinfo(np.int16).max)):
        where = f"entries {start}..{start + n}"
        raise InputFileError(info.path, f"{where}: view out of range", VIEW_BRANCH, "0..32767")
    return c.view.astype(np.int16)


@dataclass
class JetProcessor(processor.ProcessorABC):
    """ROOT chunk -> ParT tensors in a part file; returns {"chunks": [record]}."""

    files: dict[str, InputFile]
    parts_dir: str
    max_particles: int = 128
    split_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.1, "test": 0.2})
    split_salt: int = 0
    # file -> split index for files that keep their own split (`preprocess.splits_from: files`); other files'
    # jets go by the event_id hash
    file_splits: dict[str, int] = field(default_factory=dict)
    shards_per_split: int = 1  # shards this run writes per split: first_shard, first_shard + 1, ...
    first_shard: int = 0  # a group job of the fan-out writes only shard `group` (groups.py)

    def process(self, events: Any) -> dict[str, list[dict[str, Any]]]:
        # A worker's memory grew across chunks (awkward/uproot reference cycles freed late): collect the
        # previous chunk's garbage first, so memory stays flat (~1 ms against ~100 ms of work per chunk).
        gc.collect()
        meta = events.metadata
        filename, start = meta["filename"], int(meta["entrystart"])
        record: dict[str, Any] = {"file": filename, "entrystart": start, "entrystop": int(meta["entrystop"])}
        record["n_in"] = len(events)
        try:
            record.update(self._process(events, self.files[filename], start))
        except InputFileError as exc:
            record["error"] = str(exc)
        return {"chunks": [record]}

    def _process(self, events: Any, info: InputFile, start: int) -> dict[str, Any]:
        c = read_chunk(events, info, start)
        n = len(c.counts)
        label = _labels(c, info, start)
        event_id = _event_ids(c, info, start)
        view = _views(c, info, start)
        fixed = self.file_splits.get(info.path)
        if fixed is None:
            split = assign_splits(event_id, self.split_fractions, self.split_salt)
        else:
            split = np.full(n, fixed, np.int8)
        shard = shard_of(event_id, self.shards_per_split, self.split_salt)
        group_of = split.astype(np.int64) * self.shards_per_split + shard  # local index of (split, shard)
        # jets grouped by (split, shard), input order within a group: each group is one slice of the arrays
        rows = np.argsort(group_of, kind="stable")
        n_particles = np.minimum(c.counts, self.max_particles)
        kept = n_particles[rows]
        jets = {
            "n_particles": kept.astype(np.int32),
            "jet_features": features.jet_features(c.jets)[rows],
            "label": label[rows],
            "event_id": event_id[rows],
            "view": view[rows],
        }
        groups, particle_range = self._groups(group_of[rows], jets, kept)
        p, idx = c.particles, self._selection(c, rows)
        # float32 like the branches: the features need no more precision than the inputs carry
        jet_pt = np.repeat(c.jets["jet_pt"].astype(np.float32)[rows], kept)
        jet_e = np.repeat(c.jets["jet_energy"].astype(np.float32)[rows], kept)

        def particles(name: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
            return features.particle_blocks(p, idx, jet_pt, jet_e, *particle_range[name])

        part = str(Path(self.parts_dir) / part_name(info.path, start))
        write_part(part, groups, particles)
        truncated = c.counts - n_particles
        per_class = np.bincount(label, minlength=len(CLASSES))
        per_split = np.bincount(split, minlength=len(SPLITS))
        return {
            "part": part,
            "n_out": n,
            "groups": {name: len(g["label"]) for name, g in groups.items()},
            "per_class": {cls: int(k) for cls, k in zip(CLASSES, per_class, strict=True) if k},
            "per_split": {s: int(k) for s, k in zip(SPLITS, per_split, strict=True)},
            "particles_in": int(c.counts.sum()),
            "particles_truncated": int(truncated.sum()),
            "jets_truncated": int(np.count_nonzero(truncated)),
            "is_views": bool(c.view is not None),
        }

    def _groups(
        self, group_sorted: np.ndarray, jets: dict[str, np.ndarray], kept: np.ndarray
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, tuple[int, int]]]:
        """The part file's groups (name -> slices of the grouped jet arrays) and each one's particle range."""
        bounds = [*np.searchsorted(group_sorted, np.unique(group_sorted)).tolist(), len(group_sorted)]
        particle_bounds = features.offsets_of(kept)[bounds].tolist()
        groups: dict[str, dict[str, np.ndarray]] = {}
        ranges: dict[str, tuple[int, int]] = {}
        for i, (ja, jb) in enumerate(itertools.pairwise(bounds)):
            g = int(group_sorted[ja])
            name = group_name(
                SPLITS[g // self.shards_per_split], self.first_shard + g % self.shards_per_split
            )
            groups[name] = {k: v[ja:jb] for k, v in jets.items()}
            ranges[name] = (particle_bounds[i], particle_bounds[i + 1])
        return groups, ranges

    def _selection(self, c: Chunk, rows: np.ndarray) -> np.ndarray | None:
        """Input rows of the kept particles: jets in `rows` order, pT-sorted, cut to max_particles."""
        pt = np.hypot(c.particles["part_px"], c.particles["part_py"])
        return features.particle_selection(c.counts, rows, self.max_particles, pt)

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator
