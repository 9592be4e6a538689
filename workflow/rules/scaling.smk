# scaling stage: one training run per cell of the grid sizes x data sizes x repetitions (each its own job, so
# a cluster runs cells side by side and a rerun redoes only missing or changed cells), then runs.csv, the fit
# of L(N, D) with bootstrap uncertainties and the report figures. Logic: src/jetfm/scaling (`jetfm scaling`).
import os

from jetfm import walltime
from jetfm.scaling.grid import (
    CELL_PATTERN,
    cell_resources,
    cell_settings,
    cell_walltime,
    cells,
    parse_cell_id,
    pretrain_dir,
    pretrain_settings,
    pretrained_checkpoint,
    test_jets,
)

SCALING = config["scaling"]
SCALING_DIR = f"{RESULTS}/scaling/{SCALING['sweep']}"
SCALING_CELLS = [c.id for c in cells(SCALING)]


# A cell longer than the partition's cap runs as a chain of resumed jobs: retries for the longest chain.
SCALING_RETRIES = walltime.retries(
    config["slurm"]["chain_retries"], max(cell_walltime(config, c)[1] for c in SCALING_CELLS)
)
SCALING_FIGURES = ["loss_vs_n", "loss_vs_d", "isoflop", "residuals", "repetition", "learning_curves", "corner"]


# With scaling.pretrain.method, one pretraining per model size on the training split (the pretrain stage's
# objective and settings, the size's backbone), on a GPU like a cell.
rule scaling_pretrain:
    input:
        train=h5_shards("train"),
        val=h5_shards("val"),
        test=h5_shards("test"),
    output:
        checkpoint=f"{SCALING_DIR}/pretrain/{{size}}/checkpoint.pt",
    params:
        settings=lambda wildcards: pretrain_settings(config, wildcards.size),
        out_dir=lambda wildcards: pretrain_dir(config, wildcards.size),
    log:
        f"{LOGS}/scaling/{SCALING['sweep']}/pretrain_{{size}}.log",
    wildcard_constraints:
        size=r"[A-Za-z0-9_.]+",
    threads: 1 + SCALING["train"].get("num_workers", 0)
    resources:
        mem_mb=8000,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/scaling_pretrain.py"


# The first `jets` nominal jets of one fixed order of a split: nested training subsets, the fixed validation set
# (learning rate and stopping step are chosen on it) and the fixed test set (the cells' losses are scored on it).
rule scaling_subset:
    input:
        lambda wildcards: h5_shards(wildcards.split),
    output:
        f"{SCALING_DIR}/data/{{split}}_D{{jets}}.h5",
    params:
        seed=SCALING["subset_seed"],
    log:
        f"{LOGS}/scaling/{SCALING['sweep']}/subset_{{split}}_D{{jets}}.log",
    wildcard_constraints:
        split="train|val|test",
        jets=r"\d+",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/scaling_subset.py"


rule scaling_cell:
    input:
        train=lambda wildcards: f"{SCALING_DIR}/data/train_D{parse_cell_id(wildcards.cell).jets}.h5",
        val=f"{SCALING_DIR}/data/val_D{SCALING['val_jets']}.h5",
        test=f"{SCALING_DIR}/data/test_D{test_jets(SCALING)}.h5",
        # a cell that fine-tunes takes its backbone (one checkpoint, or its size's own pretraining)
        pretrained=lambda wildcards: [
            p for p in [pretrained_checkpoint(config, parse_cell_id(wildcards.cell).size)] if p
        ],
        # a seed replica trains at the learning rate its primary cell chose
        primary=lambda wildcards: (
            [f"{SCALING_DIR}/cells/{parse_cell_id(wildcards.cell).primary.id}/result.json"]
            if parse_cell_id(wildcards.cell).replica
            else []
        ),
    output:
        result=f"{SCALING_DIR}/cells/{{cell}}/result.json",
    params:
        # Everything that changes this cell's result (size, D, epochs, steps, learning rates, training keys):
        # editing one cell's settings reruns that cell only.
        settings=lambda wildcards: cell_settings(config, wildcards.cell),
        out_dir=lambda wildcards: f"{SCALING_DIR}/cells/{wildcards.cell}",
    log:
        f"{LOGS}/scaling/{SCALING['sweep']}/{{cell}}.log",
    wildcard_constraints:
        cell=CELL_PATTERN,
    threads: 1 + SCALING["train"].get("num_workers", 0)  # the training process + its loader workers
    retries: SCALING_RETRIES
    resources:
        # Grow with the cell's N, D, epochs and learning-rate candidates (jetfm.scaling.grid.cell_resources);
        # the runtime at most the GPU partition's cap (jetfm.walltime: a longer cell is a chain of jobs).
        runtime=lambda wildcards: cell_walltime(config, wildcards.cell)[0],
        mem_mb=lambda wildcards, attempt: cell_resources(config, wildcards.cell, attempt)["mem_mb"],
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/scaling_cell.py"


rule scaling_collect:
    input:
        results=expand(f"{SCALING_DIR}/cells/{{cell}}/result.json", cell=SCALING_CELLS),
    output:
        runs=report(f"{SCALING_DIR}/runs.csv", caption="../report/scaling_runs.rst", category="Scaling"),
        curves=f"{SCALING_DIR}/curves.csv",
    log:
        f"{LOGS}/scaling/{SCALING['sweep']}/collect.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/scaling_collect.py"


rule scaling_fit:
    input:
        runs=f"{SCALING_DIR}/runs.csv",
        curves=f"{SCALING_DIR}/curves.csv",
    output:
        fit=report(f"{SCALING_DIR}/fit.json", caption="../report/scaling_fit.rst", category="Scaling"),
        headline=report(
            f"{SCALING_DIR}/scaling_headline.rst", caption="../report/scaling_headline.rst", category="Summary"
        ),
        figures=[
            report(
                f"{SCALING_DIR}/{name}.png",
                caption=f"../report/scaling_{name}.rst",
                category="Scaling",
                subcategory=SCALING["sweep"],
            )
            for name in SCALING_FIGURES
        ],
    params:
        fit=SCALING["fit"],
        out_dir=lambda wildcards, output: os.path.dirname(output.fit),
    log:
        f"{LOGS}/scaling/{SCALING['sweep']}/fit.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/ml.yaml"
    script:
        "../../scripts/scaling_fit.py"


rule scaling_all:
    input:
        f"{SCALING_DIR}/fit.json",


ALL_TARGETS.append(f"{SCALING_DIR}/fit.json")
