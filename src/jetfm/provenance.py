"""Provenance carried by every output: config, seed, package versions, git revision, counts, wall time."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "jetfm", "numpy", "awkward", "uproot", "pythia8mc", "fastjet", "h5py", "coffea", "dask",
    "distributed", "dask-jobqueue", "torch", "scikit-learn", "snakemake", "hls4ml",
)  # fmt: skip


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def git_revision() -> str:
    """The repository's HEAD (with '-dirty' if modified), or 'unknown' outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def make_provenance(
    stage: str,
    config: dict[str, Any],
    seed: int | None,
    counts: dict[str, Any] | None = None,
    wall_time_s: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record of one output.

    Wall time and versions vary between machines; reproducibility tests compare payloads, not provenance.
    """
    record: dict[str, Any] = {
        "stage": stage,
        "config": config,
        "seed": seed,
        "versions": package_versions(),
        "git_revision": git_revision(),
        "counts": counts or {},
    }
    if wall_time_s is not None:
        record["wall_time_s"] = round(float(wall_time_s), 3)
    record.update(extra)
    return record
