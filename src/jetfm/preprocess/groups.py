"""Fan-out of the preprocessing stage: a fixed file -> group mapping; group g writes shard g of every split.

Why groups: one job over every simulated file made preprocessing all-or-nothing (a changed file reran
everything) and let every input chunk feed every output shard (chunks x shards part-file groups to open,
a driver holding per-shard records of every chunk). With G = `preprocess.shards_per_split` groups, each
group is one Snakemake job with its own inputs and its own outputs (`{split}/{g:04d}.h5` of every split
and `groups/{g:04d}.json`), so work and driver memory per job are bounded by the group's size, and
changing one file reruns one group. A summary over all groups (`merge_group_summaries`) checks counts.

The mapping (`group_of`): a file's *index* is the last number in its basename (`QCD/0042.root`,
`QCD/0042.views.root`, the public `HToBB_042.root` all have index 42); group = index mod G. Files
without a number go by a hash of their basename. Shard i of every class (and its views) therefore lands
in the same group: every group mixes all classes in the sample's proportions. It depends on the
basename and G only, never on the order or number of other files, so adding files leaves existing
groups alone. Splits still follow the event_id hash, so views of one event share a split (and, being in
one file, a group and a shard), or with `preprocess.splits_from: files` the split each file is listed under
(the public JetClass release numbers its files across train/val/test, so its groups hold one split each).
Shuffling across groups is the loader's (blocks of any shard + buffer).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jetfm import CLASSES
from jetfm.paths import SUMMARY_NAME, group_summary_path
from jetfm.splits import SPLITS

_NUMBER = re.compile(r"\d+")


def file_index(path: str) -> int | None:
    """The last number in the file's basename (`0042.views.root` -> 42), or None if it has none."""
    numbers = _NUMBER.findall(os.path.basename(path))
    return int(numbers[-1]) if numbers else None


def group_of(path: str, n_groups: int) -> int:
    """The group of one input file: its index mod n_groups, else BLAKE2b(basename) mod n_groups."""
    index = file_index(path)
    if index is None:
        index = int.from_bytes(hashlib.blake2b(os.path.basename(path).encode(), digest_size=8).digest())
    return index % n_groups


def assign_groups(paths: Iterable[str], n_groups: int) -> dict[int, list[str]]:
    """Non-empty groups (ascending) -> their files, in the given order."""
    out: dict[int, list[str]] = {}
    for p in paths:
        out.setdefault(group_of(p, n_groups), []).append(p)
    return dict(sorted(out.items()))


def merge_group_summaries(paths: list[str | Path]) -> dict[str, Any]:
    """One summary over all groups: counts summed, checked in == out, per-file counts kept only here.

    Reads one group summary at a time, so memory grows with the files' count records (a few hundred bytes
    each) and not with jets or chunks. Raises if a file appears in two groups or counts disagree.
    """
    if not paths:
        raise ValueError("preprocess summary: no group summaries given")
    totals: Counter = Counter()
    per_class: Counter = Counter()
    per_split: Counter = Counter({s: 0 for s in SPLITS})
    per_file: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    shards: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    first: dict[str, Any] = {}
    job_time = 0.0
    for path in paths:
        s = json.loads(Path(path).read_text())
        first = first or s
        c = s["counts"]
        if c["jets_in"] != c["jets_out"]:
            raise RuntimeError(f"preprocess summary: {path} has {c['jets_in']} jets in, {c['jets_out']} out")
        for k in ("files_in", "files_processed", "files_skipped", "jets_in", "jets_out"):
            totals[k] += c[k]
        for k in ("particles_in", "particles_truncated", "jets_truncated"):
            totals[k] += c.get(k, 0)
        per_class.update(c["per_class"])
        per_split.update(c["per_split"])
        twice = per_file.keys() & c["per_file"].keys()
        if twice:
            raise ValueError(f"preprocess summary: {sorted(twice)[0]} is in two groups (second: {path})")
        per_file.update(c["per_file"])
        group = s.get("group", len(groups))
        groups[f"{group:04d}"] = {
            "files": c["files_processed"], "jets": c["jets_out"], "per_split": c["per_split"],
            "wall_time_s": s.get("wall_time_s"), "timing": s.get("timing", {}),
        }  # fmt: skip
        shards += s["shards"]
        skipped += s.get("skipped_files", [])
        job_time += float(s.get("wall_time_s") or 0.0)
    n_written = sum(sh["n_jets"] for sh in shards)
    if not totals["jets_in"] == totals["jets_out"] == n_written == sum(g["jets"] for g in groups.values()):
        raise RuntimeError(
            f"preprocess summary: {totals['jets_in']} jets in, {totals['jets_out']} out, "
            f"{n_written} in shards"
        )
    counts = {
        **{k: totals[k] for k in ("files_in", "files_processed", "files_skipped", "jets_in", "jets_out")},
        "per_file": per_file,
        "per_class": {c: per_class[c] for c in CLASSES if per_class[c]},
        "per_split": dict(per_split),
        **{k: totals[k] for k in ("particles_in", "particles_truncated", "jets_truncated")},
    }
    shards.sort(key=lambda sh: (SPLITS.index(sh["split"]), sh["shard"]))
    return dict(
        first, counts=counts, groups=groups, shards=shards, skipped_files=skipped, group=None, timing={},
        wall_time_s=None, group_jobs_time_s=round(job_time, 3),
    )  # fmt: skip


def write_summary(out_dir: str | Path, group_summaries: list[str | Path]) -> dict[str, Any]:
    """`{out_dir}/summary.json` from the groups' summaries (the workflow's preprocess_summary rule)."""
    from jetfm.atomic import write_json_atomic

    summary = merge_group_summaries(group_summaries)
    write_json_atomic(Path(out_dir) / SUMMARY_NAME, summary)
    return summary


def run_groups(
    config: dict[str, Any], inputs: list[str], out_dir: str, *, progress: bool = True
) -> dict[str, Any]:
    """Every group in turn, then the summary: what the workflow's fan-out writes, without Snakemake."""
    from jetfm.config import validate_config
    from jetfm.preprocess.run import preprocess

    config = validate_config(config)
    groups = assign_groups(inputs, config["preprocess"]["shards_per_split"])
    for g, files in groups.items():
        preprocess(config, files, out_dir, progress=progress, group=g)
    return write_summary(out_dir, [group_summary_path(out_dir, g) for g in groups])
