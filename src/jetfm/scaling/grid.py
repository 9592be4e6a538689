"""The sweep's cells from the config's `scaling:` section: sizes x data sizes x repetitions (x seeds).

A cell is identified by `<size>-D<jets>-E<epochs>` (stable: it names the config entries, not their
position), so adding a size or a data size adds cells without renaming the others, and Snakemake reruns a
cell only when `cell_settings` (everything that changes its result) changes. A replica of a cell with another
training seed (the seed axis that measures training noise) is `<id>-S<k>`, k >= 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from jetfm.scaling import lr as lr_rule

CELL_PATTERN = r"[A-Za-z0-9_.]+-D\d+-E\d+(?:-S\d+)?"
_CELL_RE = re.compile(r"^(?P<size>[A-Za-z0-9_.]+)-D(?P<jets>\d+)-E(?P<epochs>\d+)(?:-S(?P<seed>\d+))?$")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: model size `size` on the first `jets` training jets, `epochs` passes;
    `replica` k >= 1 repeats the cell with training seed + k (at the learning rate the cell chose)."""

    size: str
    jets: int
    epochs: int
    replica: int = 0

    @property
    def id(self) -> str:
        base = f"{self.size}-D{self.jets}-E{self.epochs}"
        return f"{base}-S{self.replica}" if self.replica else base

    @property
    def primary(self) -> Cell:
        """The cell this one replicates (itself when it is not a replica)."""
        return Cell(self.size, self.jets, self.epochs)


def parse_cell_id(cell_id: str) -> Cell:
    match = _CELL_RE.match(cell_id)
    if not match:
        raise ValueError(f"scaling cell id {cell_id!r} does not look like <size>-D<jets>-E<epochs>[-S<k>]")
    return Cell(match["size"], int(match["jets"]), int(match["epochs"]), int(match["seed"] or 0))


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
    grid = [
        Cell(size, int(d), int(e))
        for size in sizes
        for d in sorted(set(section["data_sizes"]))
        for e in sorted(set(section["epochs"]))
    ]
    seeds = section.get("seeds", {})
    replicated = set(seeds.get("data_sizes") or section["data_sizes"])
    unknown = sorted(replicated - set(section["data_sizes"]))
    if unknown:
        raise ValueError(f"scaling.seeds.data_sizes {unknown} are not in scaling.data_sizes")
    e_min = min(section["epochs"])
    replicas = [
        Cell(c.size, c.jets, c.epochs, k)
        for c in grid
        if c.jets in replicated and c.epochs == e_min
        for k in range(1, int(seeds.get("count", 1)))
    ]
    return grid + replicas


def lookup(section: dict[str, Any], cell_id: str) -> Cell:
    """The cell of this grid with that id (an error naming the known ids otherwise)."""
    cell = parse_cell_id(cell_id)
    known = {c.id for c in cells(section)}
    if cell.id not in known:
        raise ValueError(
            f"scaling cell {cell_id!r} is not in the grid of this config; cells: {sorted(known)}"
        )
    return cell


def steps(cell: Cell, batch_size: int, cap: int = 0, floor: int = 0) -> int:
    """Optimiser steps: whole batches per pass over the subset (the loader drops the last partial one) times
    the passes, at least `floor` and at most `cap` (0 = no bound). A floor gives the small subsets
    more passes, so they reach the point where they overfit (early stopping picks each cell's loss on its
    curve) instead of stopping while the optimisation is still far from done; a cap stops the large-D cells
    at a step budget (then they can be compute-limited, and the fit's notes say which)."""
    n = max(max(1, cell.jets // batch_size) * cell.epochs, floor)
    return min(n, cap) if cap else n


def cell_steps(section: dict[str, Any], cell: Cell, batch_size: int) -> int:
    """`steps` with the sweep's bounds (scaling.steps_floor, scaling.steps_cap)."""
    return steps(cell, batch_size, section.get("steps_cap", 0), section.get("steps_floor", 0))


def evaluation_steps(total: int, points: int) -> list[int]:
    """`points` log-spaced validation steps up to `total` (the learning curve; the last one is `total`)."""
    if points <= 1:
        return [total]
    first = max(1, total // 32)
    ratio = (total / first) ** (1 / (points - 1))
    return sorted({max(1, round(first * ratio**i)) for i in range(points - 1)} | {total})


def test_jets(section: dict[str, Any]) -> int:
    """Jets of the test subset every cell is scored on (scaling.test_jets, or val_jets when 0)."""
    return int(section.get("test_jets") or section["val_jets"])


def width(size: dict[str, Any]) -> int:
    """The width the learning-rate rule scales with: the ParT's embed_dim (required in every sweep size)."""
    if "embed_dim" not in size or "depth" not in size:
        raise ValueError(f"scaling size {size} must give embed_dim and depth explicitly (no preset)")
    return int(size["embed_dim"])


def learning_rates(
    section: dict[str, Any], size: str, n_steps: int, multipliers: list[float] | None = None
) -> list[float]:
    """Candidate peak learning rates of a cell: the rule eta*(width, steps) (`jetfm.scaling.lr.centre`)
    times each multiplier. One multiplier is the rule alone; several are a search centred on the rule (a grid
    at least 8x wide, extended once when the best sits on an edge: `jetfm.scaling.lr.search`)."""
    lr = {"ref_steps": 1, "steps_exponent": 0.0, **section["lr"]}
    chosen = multipliers or lr["multipliers"]
    lr_rule.check_multipliers(chosen)
    centre = lr_rule.centre(lr, width(section["sizes"][size]), n_steps)
    return [float(f"{centre * m:.6g}") for m in chosen]


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
    n_steps = cell_steps(section, cell, batch)
    return {
        "cell": cell.id,
        "model": section["model"],
        "size": section["sizes"][cell.size],
        "jets": cell.jets,
        "epochs": cell.epochs,
        "steps": n_steps,
        "eval_at": evaluation_steps(n_steps, section.get("evaluations", 1)),
        # a replica trains at the learning rate its primary cell chose (read from its result at run time)
        "learning_rates": [] if cell.replica else learning_rates(section, cell.size, n_steps, multipliers),
        "lr_from": cell.primary.id if cell.replica else "",
        "lr_extend": section["lr"].get("extend", 0),
        "warmup_fraction": section["warmup_fraction"],
        "train": train,
        "init": section["init"],
        "pretrained_checkpoint": pretrained_checkpoint(config, cell.size),
        "pretrain": pretrain_settings(config, cell.size),
        "flop_probe_batches": section["flop_probe_batches"],
        "seed": config["seed"] + cell.replica,
        "replica": cell.replica,
    }


def approx_parameters(size: dict[str, Any]) -> int:
    """Block parameters of a ParT size without building it (no torch at DAG-build time):
    (depth + cls_depth) * (4 + 2 * ffn_ratio) * E^2 with ParTSize's defaults cls_depth 2, ffn_ratio 4.
    Only for sizing Slurm requests; runs.csv has the exact count."""
    e = width(size)
    return (size["depth"] + size.get("cls_depth", 2)) * (4 + 2 * size.get("ffn_ratio", 4)) * e * e


def training_flops(section: dict[str, Any], cell: Cell) -> float:
    """6 N <n> jets-seen per learning-rate run, times the runs: the candidates (+ a possible edge extension)
    of a cell, one run for a replica."""
    batch = section["train"].get("batch_size", 64)
    jets_seen = cell_steps(section, cell, batch) * batch
    runs = 1 if cell.replica else len(section["lr"]["multipliers"]) + section["lr"].get("extend", 0)
    n = approx_parameters(section["sizes"][cell.size])
    return 6.0 * n * jets_seen * section["slurm"]["mean_particles"] * runs


def expected_cost(config: dict[str, Any]) -> dict[str, float]:
    """Expected accelerator-hours of the whole grid (`training_flops` of every cell at the configured
    sustained throughput, plus the per-cell overhead) and the hours Slurm is asked for (with margins)."""
    section = config["scaling"]
    slurm = section["slurm"]
    compute_h = overhead_h = requested_h = 0.0
    for cell in cells(section):
        flops = training_flops(section, cell)
        compute_h += flops / (slurm["effective_tflops"] * 1e12) / 3600
        overhead_h += slurm["overhead_minutes"] / 60
        requested_h += cell_resources(config, cell.id)["runtime"] / 60
    return {"cells": len(cells(section)), "compute_hours": compute_h, "overhead_hours": overhead_h,
            "expected_hours": compute_h + overhead_h, "requested_hours": requested_h}  # fmt: skip


def cell_resources(config: dict[str, Any], cell_id: str, attempt: int = 1) -> dict[str, int]:
    """Slurm runtime (minutes) and memory (MB) of one cell, from its N, D, epochs and LR candidates.

    runtime = overhead + 2 x training_flops / throughput (x attempt). Memory: 16 bytes per
    parameter (weights, gradients, two Adam moments) + activations of one batch (per-particle tensors and the
    heads x P^2 attention biases of every block, kept for the backward) + base; it does not grow with D,
    because the loader streams the subset in blocks instead of loading it.
    """
    section = config["scaling"]
    slurm = section["slurm"]
    cell = lookup(section, cell_id)
    size = section["sizes"][cell.size]
    n = approx_parameters(size)
    flops = training_flops(section, cell)
    minutes = slurm["overhead_minutes"] + 2.0 * flops / (slurm["effective_tflops"] * 1e12) / 60.0
    batch, p, blocks = section["train"].get("batch_size", 64), 128, size["depth"] + size.get("cls_depth", 2)
    activations = batch * p * blocks * (30 * width(size) + 3 * size.get("heads", 8) * p) * 4
    mem = slurm["base_mem_mb"] + (16 * n + activations) / 1e6
    return {"runtime": math.ceil(minutes * attempt), "mem_mb": math.ceil(mem * attempt)}


def cell_walltime(config: dict[str, Any], cell_id: str) -> tuple[int, int]:
    """(minutes requested, extra chained jobs) of a cell on the GPU partition: its runtime at most the
    partition's cap (`slurm.max_runtime_minutes.gpu`); a longer cell runs as a chain of resumed jobs."""
    from jetfm import walltime

    return walltime.cap(config, "gpu", cell_resources(config, cell_id)["runtime"])


def per_size_pretraining(section: dict[str, Any]) -> bool:
    """Whether each model size gets its own pretraining (init = pretrained with scaling.pretrain.method)."""
    method = section.get("pretrain", {}).get("method", "")
    if method and section["pretrained_checkpoint"]:
        raise ValueError(
            "scaling.pretrained_checkpoint and scaling.pretrain.method are both set: give one checkpoint for "
            "every size, or a method for one pretraining per size, not both"
        )
    return section["init"] == "pretrained" and bool(method)


def pretrain_dir(config: dict[str, Any], size: str) -> str:
    """Where the pretraining of one model size lives: results/scaling/<sweep>/pretrain/<size>."""
    from jetfm.paths import scaling_dir

    return f"{scaling_dir(config['scaling']['sweep'])}/pretrain/{size}"


def pretrained_checkpoint(config: dict[str, Any], size: str) -> str:
    """The backbone a cell of `size` starts from ("" from scratch)."""
    section = config["scaling"]
    if section["init"] != "pretrained":
        return ""
    if per_size_pretraining(section):
        return f"{pretrain_dir(config, size)}/checkpoint.pt"
    return section["pretrained_checkpoint"]


def pretrain_settings(config: dict[str, Any], size: str) -> dict[str, Any]:
    """Everything that changes one size's pretraining ({} without per-size pretraining): its rerun trigger,
    and part of its cells' settings (a new backbone reruns them)."""
    section = config["scaling"]
    if not per_size_pretraining(section):
        return {}
    return {
        "method": section["pretrain"]["method"],
        "size": section["sizes"][size],
        "train": {**config.get("pretrain", {}).get("train", {}), **section["pretrain"].get("train", {})},
        "seed": config["seed"],
    }


def pretraining_config(config: dict[str, Any], size: str) -> dict[str, Any]:
    """The workflow config of one size's pretraining: the pretrain stage's, with the size's backbone and
    scaling.pretrain.train over pretrain.train."""
    settings = pretrain_settings(config, size)
    pretrain = {**config.get("pretrain", {}), "size": settings["size"], "train": settings["train"]}
    return {**config, "pretrain": pretrain}
