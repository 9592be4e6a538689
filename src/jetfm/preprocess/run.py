"""`preprocess(config, inputs, out_dir)`: the whole stage, called by the Snakemake script and the CLI.

1. validate every input file up front (cheap; bad files fail or are skipped before any Dask work),
2. run `JetProcessor` with a coffea `Runner` (Dask executor on the configured cluster, or in-process);
   workers write per-chunk part files under `{out_dir}/.parts-<id>/`,
3. merge parts into `{out_dir}/{split}/{shard:04d}.h5` (one Dask task per shard), sorted by
   (event_id, view, jet axis),
4. check jets in == jets out, write `{out_dir}/summary.json` (provenance, counts, skipped files) last.

With `group=g` (one job of the workflow's fan-out, see groups.py) every jet goes to shard g of its split
and the summary is `{out_dir}/groups/{g:04d}.json`; `merge_group_summaries` joins the groups' summaries.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from coffea import processor
from coffea.nanoevents import BaseSchema
from tqdm import tqdm

from jetfm import CLASSES
from jetfm.atomic import write_json_atomic
from jetfm.config import validate_config
from jetfm.jetclass import TREE_NAME
from jetfm.paths import SUMMARY_NAME, group_summary_path, preprocess_file_splits, shard_path
from jetfm.preprocess import features
from jetfm.preprocess.cluster import make_client
from jetfm.preprocess.inputs import validate_inputs
from jetfm.preprocess.processor import JetProcessor
from jetfm.preprocess.writer import (
    assemble_shard,
    chunk_rows,
    group_name,
    merge_rows,
    plan_shard,
    row_ranges,
)
from jetfm.provenance import make_provenance
from jetfm.shards import check_compression
from jetfm.splits import SPLITS
from jetfm.stale import owner_tag, remove_stale, temp_patterns

log = logging.getLogger(__name__)


def output_paths(out_dir: str | Path, shards_per_split: int) -> dict[str, list[str]]:
    """Every file one run writes, by split, plus the summary: a pure function of out_dir and config."""
    out = {s: [str(shard_path(out_dir, s, i)) for i in range(shards_per_split)] for s in SPLITS}
    out["summary"] = [str(Path(out_dir) / SUMMARY_NAME)]
    return out


def _run_processor(
    proc: JetProcessor, files: list[str], client: Any, chunksize: int, progress: bool
) -> list[dict]:
    """The coffea Runner over all files; chunk records sorted so the summary does not depend on scheduling."""
    fileset = {"jetfm": {"treename": TREE_NAME, "files": files}}
    if client is None:
        executor = processor.IterativeExecutor(status=progress)
    else:
        executor = processor.DaskExecutor(client=client, status=progress)
    # A fresh metadata cache: coffea's default is process-global and keyed by path, so a file rewritten
    # at the same path (a rerun in one session) would be chunked with its old entry count.
    runner = processor.Runner(executor=executor, schema=BaseSchema, chunksize=chunksize, metadata_cache={})
    out = runner(fileset, proc, treename=TREE_NAME)
    return sorted(out["chunks"], key=lambda r: (r["file"], r["entrystart"]))


_FIRST = 1 << 40  # Dask priority above any task size in rows


def _split_merge(client: Any, compression: str, layout: str, n_ranges: int) -> bool:
    """Pad a shard in row-range tasks + a chunk copy only where it pays: workers to share the ranges, and
    compressed padded chunks (an uncompressed copy costs about what it spreads; packed shards are one task,
    writer.py)."""
    return client is not None and compression != "none" and layout == "padded" and n_ranges > 1


def _submit(client: Any, fn: Any, *args: Any, priority: int = 0) -> Any:
    """A Dask future of fn(*args) (among ready tasks, higher priority first), or its value in-process."""
    return fn(*args) if client is None else client.submit(fn, *args, pure=False, priority=priority)


def _merge_shard(client: Any, plan: Any, n: int, staging: str, attrs: dict, pad: tuple) -> Any:
    """The tasks of one planned shard of n rows: its row ranges (where splitting pays) and the assembly.

    Priorities are sizes in rows, so among ready tasks the longest run first and the last ones are short
    (no worker idles while another finishes a long task); an assembly that only copies chunks runs as soon
    as its pieces exist, so pieces never pile up in the staging directory.
    """
    ranges = row_ranges(n)
    max_particles, n_feat, compression, layout = pad
    if not _split_merge(client, compression, layout, len(ranges)):
        return _submit(client, assemble_shard, plan, None, staging, attrs, *pad, priority=n)
    pieces = [
        _submit(
            client, merge_rows, plan, a, b, chunk_rows(n), max_particles, n_feat, compression, priority=b - a
        )
        for a, b in ranges
    ]
    return _submit(client, assemble_shard, plan, pieces, staging, attrs, *pad, priority=_FIRST)


def _merge_all(
    kept: list[dict[str, Any]],
    shard_ids: range,
    staging: str,
    attrs: dict,
    shape: tuple,
    client: Any,
    progress: bool,
) -> list[dict]:
    """Merge every shard: plan (row order), pad + compress row ranges, assemble; on Dask workers if a client.

    A shard's row ranges are separate tasks (N jets give ~N / ROWS_PER_TASK of them), so the workers share
    even a single large train shard; a shard's assembly waits only for its own ranges.
    """
    max_particles, n_feat, _, compression, layout = shape
    pad = (max_particles, n_feat, compression, layout)
    shards = []
    for split in SPLITS:
        for i in shard_ids:
            name = group_name(split, i)
            n = sum(r["groups"].get(name, 0) for r in kept)
            shards.append((split, i, [r["part"] for r in kept if name in r["groups"]], n))
    plans = [_submit(client, plan_shard, parts, split, i, staging) for split, i, parts, _ in shards]
    if client is not None:
        # wait for the (cheap) plans: tasks without dependencies are queued by priority, while tasks that
        # wait on a plan would be sent to workers as soon as it is done, ahead of that order
        plans = client.gather(plans)
    in_process_bar = tqdm(shards, desc="merge", disable=not progress or client is not None)
    out = [
        _merge_shard(client, plan, s[3], staging, attrs, pad)
        for s, plan in zip(in_process_bar, plans, strict=True)
    ]
    if client is None:
        return out
    return [f.result() for f in tqdm(out, desc="merge", disable=not progress)]


def preprocess(
    config: dict[str, Any],
    inputs: list[str],
    out_dir: str,
    *,
    progress: bool = True,
    group: int | None = None,
) -> dict[str, Any]:
    """ROOT files in the JetClass layout -> HDF5 shards under `out_dir`; returns the summary dict.

    `config` is the full workflow config (validated here, defaults filled); only its `preprocess` section
    steers the work. `dask.cluster: slurm` runs workers as Slurm jobs; out_dir must then be on a filesystem
    the worker nodes share (the parts are written there). Raises InputFileError / ValueError naming the
    file, branch and expectation on bad input unless `preprocess.skip_bad_files`.
    `group=g`: the inputs are fan-out group g; all jets go to shard g of their split (module docstring).
    """
    t0 = time.perf_counter()
    config = validate_config(config)
    cfg = config["preprocess"]
    check_compression(cfg["layout"], cfg["compression"])
    out = Path(out_dir).resolve()
    good, skipped = validate_inputs(list(inputs), cfg["skip_bad_files"])
    timing = {"validate_s": time.perf_counter() - t0}
    for s in skipped:
        log.warning("skipping bad input %s", s["error"])
    if not good:
        raise ValueError(
            f"preprocess: no readable input files left (skipped: {[s['file'] for s in skipped]})"
        )
    # Leftovers of killed runs into this directory (dataset-sized at scale) go first; the new ones carry
    # this process's owner tag, so a later run can tell whether their owner is still alive.
    file_splits = _file_splits(config, good)  # before anything is written: an unlisted file is an error
    remove_stale(out, (".parts-*", ".staging-*", *temp_patterns(out / SUMMARY_NAME)))
    run_id = f"{owner_tag()}-{uuid.uuid4().hex[:12]}"
    parts_dir, staging = out / f".parts-{run_id}", out / f".staging-{run_id}"
    parts_dir.mkdir(parents=True, exist_ok=True)
    proc = JetProcessor(
        files={f.path: f for f in good},
        file_splits=file_splits,
        parts_dir=str(parts_dir),
        max_particles=cfg["max_particles"],
        split_fractions=dict(cfg["split_fractions"]),
        split_salt=cfg["split_salt"],
        shards_per_split=1 if group is not None else cfg["shards_per_split"],
        first_shard=group or 0,
    )
    shard_ids = range(proc.first_shard, proc.first_shard + proc.shards_per_split)
    try:
        with make_client(cfg["dask"]) as client:
            timing["startup_s"] = time.perf_counter() - t0 - timing["validate_s"]
            t1 = time.perf_counter()
            chunks = _run_processor(proc, [f.path for f in good], client, cfg["chunksize"], progress)
            timing["process_s"] = time.perf_counter() - t1
            bad_files = _bad_files(chunks)
            if bad_files and not cfg["skip_bad_files"]:
                raise _input_error(bad_files)
            skipped += [{"file": f, "error": e} for f, e in sorted(bad_files.items())]
            kept = [r for r in chunks if r["file"] not in bad_files]
            counts = _counts(good, kept, bad_files, n_inputs=len(inputs))
            prov = make_provenance(
                "preprocess", config, None, counts, time.perf_counter() - t0, skipped_files=skipped
            )
            shape = (
                cfg["max_particles"],
                len(features.PARTICLE_FEATURE_NAMES),
                len(features.JET_FEATURE_NAMES),
                cfg["compression"],
                cfg["layout"],
            )
            # per-file counts stay in the summary: a shard's copy would grow with the number of files
            attrs = _attrs(cfg, dict(prov, counts={k: v for k, v in counts.items() if k != "per_file"}))
            t1 = time.perf_counter()
            shards = _merge_all(kept, shard_ids, str(staging), attrs, shape, client, progress)
            timing["merge_s"] = time.perf_counter() - t1
        # All shards merged: only now replace the outputs, so a failed run leaves no mix of old and new.
        for shard in shards:
            final = shard_path(out, shard["split"], shard["shard"])
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(shard.pop("path"), final)
            shard["path"] = str(final)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    n_written = sum(s["n_jets"] for s in shards)
    if n_written != counts["jets_out"]:
        raise RuntimeError(
            f"preprocess: {counts['jets_out']} jets processed but {n_written} written to shards"
        )
    counts["wall_time_s"] = round(time.perf_counter() - t0, 3)
    timing = {k: round(v, 3) for k, v in timing.items()}
    summary = dict(
        prov,
        shards=shards,
        layout=cfg["layout"],
        wall_time_s=counts["wall_time_s"],
        timing=timing,
        group=group,
    )
    write_json_atomic(out / SUMMARY_NAME if group is None else group_summary_path(out, group), summary)
    log.info("preprocess: %d jets in, %d out, %d file(s) skipped, %.1f s", counts["jets_in"],
             counts["jets_out"], len(skipped), counts["wall_time_s"])  # fmt: skip
    return summary


def _file_splits(config: dict[str, Any], good: list[Any]) -> dict[str, int]:
    """{file: split index} with `preprocess.splits_from: files` (each file's jets keep the split it is listed
    under in input_files, e.g. JetClass's own test set), else {} (the event_id hash decides).

    The lists are expanded again here (the job may run on another node than the planning); an input that
    is in none of them has no split, which is an error naming it.
    """
    if config["preprocess"]["splits_from"] != "files":
        return {}
    listed = preprocess_file_splits(config)
    out = {}
    for f in good:
        if f.path not in listed:
            raise ValueError(
                f"preprocess: {f.path} is under none of preprocess.input_files.{{train,val,test}} "
                "(expected every input listed under one split with preprocess.splits_from: files)"
            )
        out[f.path] = SPLITS.index(listed[f.path])
    return out


def _bad_files(chunks: list[dict[str, Any]]) -> dict[str, str]:
    bad: dict[str, str] = {}
    for r in chunks:
        if r.get("error"):
            bad.setdefault(r["file"], r["error"])
    return bad


def _input_error(bad_files: dict[str, str]) -> Exception:
    from jetfm.preprocess.inputs import InputFileError

    first = next(iter(sorted(bad_files)))
    more = f" (and {len(bad_files) - 1} more file(s))" if len(bad_files) > 1 else ""
    err = InputFileError(first, bad_files[first].split(": ", 1)[-1] + more)
    err.args = (bad_files[first] + more + "; set preprocess.skip_bad_files: true to skip bad files",)
    return err


def _counts(
    good: list, kept: list[dict[str, Any]], bad_files: dict[str, str], n_inputs: int
) -> dict[str, Any]:
    """Counts in/out per file, per class, per split, and truncation, from the chunk records."""
    per_file: dict[str, dict[str, Any]] = {}
    for f in good:
        if f.path not in bad_files:
            per_file[f.path] = {"jets_in": f.n_entries, "jets_out": 0, "per_split": Counter()}
    per_class: Counter = Counter()
    per_split: Counter = Counter({s: 0 for s in SPLITS})
    totals: Counter = Counter()
    for r in kept:
        pf = per_file[r["file"]]
        pf["jets_out"] += r["n_out"]
        pf["per_split"].update(r["per_split"])
        per_class.update(r["per_class"])
        per_split.update(r["per_split"])
        for k in ("particles_in", "particles_truncated", "jets_truncated"):
            totals[k] += r[k]
    for path, pf in per_file.items():
        if pf["jets_out"] != pf["jets_in"]:
            raise RuntimeError(
                f"preprocess: {path} has {pf['jets_in']} entries but {pf['jets_out']} were processed"
            )
        pf["per_split"] = dict(pf["per_split"])
    return {
        "files_in": n_inputs,
        "files_processed": len(per_file),
        "files_skipped": n_inputs - len(per_file),
        "jets_in": sum(pf["jets_in"] for pf in per_file.values()),
        "jets_out": sum(pf["jets_out"] for pf in per_file.values()),
        "per_file": per_file,
        "per_class": {c: per_class[c] for c in CLASSES if per_class[c]},
        "per_split": dict(per_split),
        **dict(totals),
    }


def _attrs(cfg: dict[str, Any], prov: dict[str, Any]) -> dict[str, Any]:
    import json

    return {
        "feature_names": list(features.PARTICLE_FEATURE_NAMES),
        "vector_names": list(features.VECTOR_NAMES),
        "jet_feature_names": list(features.JET_FEATURE_NAMES),
        "classes": list(CLASSES),
        "max_particles": cfg["max_particles"],
        "feature_transforms": json.dumps(features.feature_transforms(), sort_keys=True),
        "provenance": prov,
    }
