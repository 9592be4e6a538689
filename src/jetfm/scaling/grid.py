"""The sweep's cells from the config's `scaling:` section: sizes x data sizes x repetitions.

A cell is identified by `<size>-D<jets>-E<epochs>` (stable: it names the config entries, not their
position), so adding a size or a data size adds cells without renaming the others, and Snakemake reruns a
cell only when `cell_settings` (everything that changes its result) changes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

CELL_PATTERN = r"[A-Za-z0-9_.]+-D\d+-E\d+"
_CELL_RE = re.compile(r"^(?P<size>[A-Za-z0-9_.]+)-D(?P<jets>\d+)-E(?P<epochs>\d+)$")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: model size `size` on the first `jets` training jets, `epochs` passes."""

    size: str
    jets: int
    epochs: int

    @property
    def id(self) -> str:
        return f"{self.size}-D{self.jets}-E{self.epochs}"


def parse_cell_id(cell_id: str) -> Cell:
    match = _CELL_RE.match(cell_id)
    if not match:
        raise ValueError(f"scaling cell id {cell_id!r} does not look like <size>-D<jets>-E<epochs>")
    return Cell(match["size"], int(match["jets"]), int(match["epochs"]))


def cells(section: dict[str, Any]) -> list[Cell]:
    """Every cell of the grid, ordered by size (config order), data size, epochs."""
    sizes = section["sizes"]
    if not sizes:
        raise ValueError("scaling.sizes is empty: name at least one model size")
    bad = [name for name in sizes if not re.fullmatch(r"[A-Za-z0-9_.]+", name)]
    if bad:
        raise ValueError(f"scaling.sizes names {bad} may only use letters, digits, '_' and '.'")
    from jetfm.train.config import TrainConfig  # a dataclass, no torch

    try:  # a typo in scaling.train fails when the grid is read, not hours later in a cell job
        TrainConfig.from_dict(section["train"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scaling.train: {exc}") from exc
    batch = section["train"].get("batch_size", 64)
    small = [d for d in section["data_sizes"] if d < batch]
    if small:
        raise ValueError(
            f"scaling.data_sizes {small} are below scaling.train.batch_size={batch}: a cell needs >= 1 batch"
        )
    return [
        Cell(size, int(d), int(e))
        for size in sizes
        for d in sorted(set(section["data_sizes"]))
        for e in sorted(set(section["epochs"]))
    ]


def lookup(section: dict[str, Any], cell_id: str) -> Cell:
    """The cell of this grid with that id (an error naming the known ids otherwise)."""
    cell = parse_cell_id(cell_id)
    known = {c.id for c in cells(section)}
    if cell.id not in known:
        raise ValueError(
            f"scaling cell {cell_id!r} is not in the grid of this config; cells: {sorted(known)}"
        )
    return cell


def steps(cell: Cell, batch_size: int) -> int:
    """Optimiser steps: whole batches per pass over the subset (the loader drops the last partial one)."""
    return max(1, cell.jets // batch_size) * cell.epochs


def width(size: dict[str, Any]) -> int:
    """The width the learning-rate rule scales with: the ParT's embed_dim (required in every sweep size)."""
    if "embed_dim" not in size or "depth" not in size:
        raise ValueError(f"scaling size {size} must give embed_dim and depth explicitly (no preset)")
    return int(size["embed_dim"])


def learning_rates(section: dict[str, Any], size: str, multipliers: list[float] | None = None) -> list[float]:
    """Candidate peak learning rates of a size: base * (width / ref_width)^-width_exponent * multipliers.

    With one multiplier this is the width rule alone; with several, each cell keeps the candidate with the
    lowest validation loss (a small per-cell search centred on the rule).
    """
    lr = section["lr"]
    w = width(section["sizes"][size])
    centre = lr["base"] * (w / lr["ref_width"]) ** (-lr["width_exponent"])
    return [float(f"{centre * m:.6g}") for m in multipliers or lr["multipliers"]]


def cell_overrides(section: dict[str, Any], cell_id: str) -> dict[str, Any]:
    """scaling.cell_overrides[cell_id] (TrainConfig keys and/or lr_multipliers), checked against the grid."""
    overrides = section.get("cell_overrides", {})
    unknown = sorted(set(overrides) - {c.id for c in cells(section)})
    if unknown:
        raise ValueError(f"scaling.cell_overrides names cell(s) {unknown} that are not in the grid")
    return dict(overrides.get(cell_id, {}))


def cell_settings(config: dict[str, Any], cell_id: str) -> dict[str, Any]:
    """Everything that changes one cell's result: Snakemake's params of the cell job (change -> rerun)."""
    section = config["scaling"]
    cell = lookup(section, cell_id)
    overrides = cell_overrides(section, cell_id)
    multipliers = overrides.pop("lr_multipliers", None)
    train = {**section["train"], **overrides}
    batch = train.get("batch_size", 64)
    return {
        "cell": cell.id,
        "model": section["model"],
        "size": section["sizes"][cell.size],
        "jets": cell.jets,
        "epochs": cell.epochs,
        "steps": steps(cell, batch),
        "learning_rates": learning_rates(section, cell.size, multipliers),
        "warmup_fraction": section["warmup_fraction"],
        "train": train,
        "init": section["init"],
        "pretrained_checkpoint": section["pretrained_checkpoint"] if section["init"] == "pretrained" else "",
        "flop_probe_batches": section["flop_probe_batches"],
        "seed": config["seed"],
    }


def approx_parameters(size: dict[str, Any]) -> int:
    """Block parameters of a ParT size without building it (no torch at DAG-build time):
    (depth + cls_depth) * (4 + 2 * ffn_ratio) * E^2 with ParTSize's defaults cls_depth 2, ffn_ratio 4.
    Only for sizing Slurm requests; runs.csv has the exact count."""
    e = width(size)
    return (size["depth"] + size.get("cls_depth", 2)) * (4 + 2 * size.get("ffn_ratio", 4)) * e * e


def expected_cost(config: dict[str, Any]) -> dict[str, float]:
    """Expected accelerator-hours of the whole grid (6 N D epochs <n> per LR candidate at the configured
    sustained throughput, plus the per-cell overhead) and the hours Slurm is asked for (with margins)."""
    section = config["scaling"]
    slurm = section["slurm"]
    compute_h = overhead_h = requested_h = 0.0
    for cell in cells(section):
        n = approx_parameters(section["sizes"][cell.size])
        flops = (
            6.0 * n * cell.jets * cell.epochs * slurm["mean_particles"] * len(section["lr"]["multipliers"])
        )
        compute_h += flops / (slurm["effective_tflops"] * 1e12) / 3600
        overhead_h += slurm["overhead_minutes"] / 60
        requested_h += cell_resources(config, cell.id)["runtime"] / 60
    return {"cells": len(cells(section)), "compute_hours": compute_h, "overhead_hours": overhead_h,
            "expected_hours": compute_h + overhead_h, "requested_hours": requested_h}  # fmt: skip


def cell_resources(config: dict[str, Any], cell_id: str, attempt: int = 1) -> dict[str, int]:
    """Slurm runtime (minutes) and memory (MB) of one cell, from its N, D, epochs and LR candidates.

    runtime = overhead + 2 x 6 N D epochs <n> * candidates / throughput (x attempt). Memory: 16 bytes per
    parameter (weights, gradients, two Adam moments) + activations of one batch (per-particle tensors and the
    heads x P^2 attention biases of every block, kept for the backward) + base; it does not grow with D,
    because the loader streams the subset in blocks instead of loading it.
    """
    section = config["scaling"]
    slurm = section["slurm"]
    cell = lookup(section, cell_id)
    size = section["sizes"][cell.size]
    n = approx_parameters(size)
    flops = 6.0 * n * cell.jets * cell.epochs * slurm["mean_particles"] * len(section["lr"]["multipliers"])
    minutes = slurm["overhead_minutes"] + 2.0 * flops / (slurm["effective_tflops"] * 1e12) / 60.0
    batch, p, blocks = section["train"].get("batch_size", 64), 128, size["depth"] + size.get("cls_depth", 2)
    activations = batch * p * blocks * (30 * width(size) + 3 * size.get("heads", 8) * p) * 4
    mem = slurm["base_mem_mb"] + (16 * n + activations) / 1e6
    return {"runtime": math.ceil(minutes * attempt), "mem_mb": math.ceil(mem * attempt)}
