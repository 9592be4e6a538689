"""Pretraining run labels beyond the method: a pretraining seed and the unlabelled set's size.

`<method>[-u<fraction>][-s<seed index>]`, e.g. `rs3l`, `mpm-s1` (second pretraining seed), `mpm-u0.25`
(pretrained on a quarter of the unlabelled training events). The label names the run directory
(`jetfm.paths.pretrain_dir(dataset, label)`) and the Snakemake wildcard, so the scripts and the rules pass one
string and `run_pretraining` reads everything from it. Seed index k pretrains with seed
(config seed + 1009 k);
index 0 is the config seed itself, so `mpm` is `mpm-s0`. The unlabelled fraction keeps the training events
whose hash (salted apart from the split and labelled-subset hashes) falls below it: all views of an event
stay together, and the sizes are nested (the 0.25 events lie inside the 0.5 events).

Pretraining on some classes only (`pretrain.classes`, the held-out-class study) reads the labels to drop the
others, once, before training; the objectives themselves still read no label.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from jetfm.splits import hash_unit_interval

UNLABELLED_SALT = 0x756E6C6162656C64  # "unlabeld"
SEED_STRIDE = 1009
_LABEL = re.compile(r"^(?P<method>[a-z0-9_]+?)(?:-u(?P<u>[0-9.]+))?(?:-s(?P<s>\d+))?$")


@dataclass(frozen=True)
class PretrainVariant:
    method: str
    unlabelled: float = 1.0
    seed_index: int = 0

    @property
    def label(self) -> str:
        return (
            self.method
            + (f"-u{self.unlabelled:g}" if self.unlabelled < 1 else "")
            + (f"-s{self.seed_index}" if self.seed_index else "")
        )

    def seed(self, base: int) -> int:
        return int(base) + SEED_STRIDE * self.seed_index


def parse_variant(label: str) -> PretrainVariant:
    """'mpm-u0.25-s1' -> PretrainVariant('mpm', 0.25, 1); one clear line for a label that is not one."""
    m = _LABEL.match(label)
    if not m:
        raise ValueError(f"pretraining run label {label!r}: expected <method>[-u<fraction>][-s<seed index>]")
    u = float(m["u"]) if m["u"] else 1.0
    if not 0 < u <= 1:
        raise ValueError(f"pretraining run label {label!r}: unlabelled fraction {u} must be in (0, 1]")
    return PretrainVariant(m["method"], u, int(m["s"] or 0))


def backbone_label(finetune_method: str, seed_index: int, pretrain_seeds: int) -> str:
    """The pretraining run a fine-tuning method's seed starts from: seed i uses pretraining seed
    i mod `pretrain_seeds`, so the seeds of a cell span the pretraining variance too."""
    v = parse_variant(finetune_method.removesuffix("-probe"))
    return PretrainVariant(v.method, v.unlabelled, seed_index % max(1, pretrain_seeds)).label


def event_selection(
    paths: list[str], unlabelled: float, classes: list[int] | None
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per shard, the rows pretraining keeps (events under the unlabelled fraction, jets of `classes`)."""
    keep, counts = {}, {"rows_in": 0, "rows_kept": 0}
    for path in paths:
        with h5py.File(path, "r") as f:
            rows = np.ones(f["label"].shape[0], bool)
            if unlabelled < 1:
                rows &= hash_unit_interval(f["event_id"][:], UNLABELLED_SALT) < unlabelled
            if classes is not None:
                rows &= np.isin(f["label"][:], classes)
        keep[path] = rows
        counts["rows_in"] += int(rows.size)
        counts["rows_kept"] += int(rows.sum())
    return keep, counts


def restricted_files(
    paths: list[str], out_dir: Path, unlabelled: float, classes: list[int] | None
) -> tuple[list[str], dict[str, int]]:
    """Training shards restricted to the variant (copies in out_dir), or the shards themselves when whole."""
    if unlabelled >= 1 and classes is None:
        return list(paths), {}
    from jetfm.shards import write_row_subset

    keep, counts = event_selection(paths, unlabelled, classes)
    by_name = {os.path.abspath(p): rows for p, rows in keep.items()}
    what = f"unlabelled fraction {unlabelled:g}, classes {classes}"
    files = write_row_subset(paths, out_dir, lambda f: by_name[os.path.abspath(f.filename)], what)
    return files, counts
