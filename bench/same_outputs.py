"""Did a refactor keep the pipeline's outputs? Compare two `results/` trees of the same config.

    python bench/same_outputs.py OLD/results NEW/results

Every file present in OLD is compared with NEW: equal bytes, else by content (JSON keys, CSV columns, HDF5
datasets and attributes, ROOT branches). What a rerun changes anyway is set aside and listed: provenance
(git revision, wall time), timings (keys and columns ending in `_s` or `time_s`, throughputs `_per_s`), the
run directory's absolute paths, lock files, figures and binaries that embed times or paths (PNG, hls4ml
builds). Exit 1 when anything else differs, naming the file and the key/column/dataset.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

SKIP_SUFFIXES = (".png", ".pt", ".so", ".sh", ".yml", ".html", ".log")
SKIP_NAMES = (".lock",)  # a run directory's lock: the pid and host of the run
VOLATILE_KEYS = ("provenance", "git_revision", "timing", "path", "per_file")


def volatile(key: str) -> bool:
    """Keys whose value depends on when and where the run happened, not on what it computed."""
    return key in VOLATILE_KEYS or key.endswith("_s")


def json_diff(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if not volatile(k):
                out += json_diff(a.get(k), b.get(k), f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in json_diff(x, y, f"{where}[{i}]")
        ]
    both_nan = isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)  # empty bins
    return [] if a == b or both_nan else [where or "/"]


def csv_diff(a: Path, b: Path) -> list[str]:
    ra, rb = list(csv.DictReader(a.open())), list(csv.DictReader(b.open()))
    if len(ra) != len(rb):
        return [f"{len(ra)} vs {len(rb)} rows"]
    return sorted({c for x, y in zip(ra, rb, strict=True) for c in x if not volatile(c) and x[c] != y.get(c)})


def h5_diff(a: Path, b: Path) -> list[str]:
    import h5py

    with h5py.File(a) as fa, h5py.File(b) as fb:
        out = [k for k in fa if k not in fb or not np.array_equal(fa[k][()], fb[k][()])]
        return out + [
            f"attr {k}" for k in fa.attrs if not volatile(k) and str(fa.attrs[k]) != str(fb.attrs.get(k))
        ]


def root_diff(a: Path, b: Path) -> list[str]:
    import uproot

    with uproot.open(a) as fa, uproot.open(b) as fb:
        out = []
        for tree in [k.split(";")[0] for k in fa if fa[k].classname == "TTree"]:
            xa, xb = fa[tree].arrays(library="np"), fb[tree].arrays(library="np")
            out += [f"{tree}/{k}" for k in xa if k not in xb or not all(map(np.array_equal, xa[k], xb[k]))]
        return out


def content_diff(a: Path, b: Path) -> list[str]:
    """What differs between two files of the same name, by their format."""
    if a.suffix == ".json":
        return json_diff(json.loads(a.read_text()), json.loads(b.read_text()))
    readers = {".csv": csv_diff, ".h5": h5_diff, ".root": root_diff}
    return readers[a.suffix](a, b) if a.suffix in readers else ["bytes"]


def compare(old: Path, new: Path) -> tuple[int, int, list[str]]:
    """(files equal in bytes, files equal in content, differences as 'file: what')."""
    same = content = 0
    diffs: list[str] = []
    for f in sorted(p for p in old.rglob("*") if p.is_file()):
        rel = f.relative_to(old)
        g = new / rel
        if f.suffix in SKIP_SUFFIXES or f.name in SKIP_NAMES or "/hls/" in f"/{rel.as_posix()}":
            continue
        if not g.exists():
            diffs.append(f"{rel}: missing in {new}")
            continue
        if f.read_bytes() == g.read_bytes():
            same += 1
            continue
        found = content_diff(f, g)
        if found:
            diffs.append(f"{rel}: {', '.join(found[:5])}")
        else:
            content += 1
    return same, content, diffs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args()
    same, content, diffs = compare(args.old, args.new)
    print(f"{same} files equal byte for byte, {content} equal apart from provenance/timing/paths, "
          f"{len(diffs)} different")  # fmt: skip
    for d in diffs:
        print(f"  {d}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
