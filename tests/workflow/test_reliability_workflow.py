"""Rerun triggers and config errors of the workflow (issue 11, failures 2 and 5).

The rerun test runs the real Snakefile once with every `script:` replaced by a stub that only touches its
outputs (so Snakemake records each job's params in .snakemake/metadata in seconds), then changes one key per
stage and checks which jobs a dry run lists: exactly the jobs whose output depends on that key.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
STUB = """from pathlib import Path
for f in snakemake.output:
    Path(f).parent.mkdir(parents=True, exist_ok=True)
    Path(f).write_text("stub")
"""
CONFIG = {
    "dataset": "fx", "seed": 7, "classes": ["QCD", "Tbqq"],
    "simulate": {"shards": 1, "jets_per_shard": 10},
    "resimulate": {"enabled": True, "shards": 1, "events_per_shard": 5, "views": 2},
    "preprocess": {"shards_per_split": 1, "dask": {"cluster": "none"}},
    "train": {"models": ["pfn", "mlp"], "max_steps": 5},
}  # fmt: skip


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([SNAKEMAKE, "--cores", "1", *args], cwd=workdir, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)  # fmt: skip


def _copy_workflow(dest: Path, config: dict) -> Path:
    for part in ("Snakefile", "workflow", "profiles", "envs"):
        src = REPO / part
        (shutil.copytree(src, dest / part) if src.is_dir() else shutil.copy(src, dest / part))
    (dest / "scripts").mkdir()
    for script in (REPO / "scripts").glob("*.py"):
        (dest / "scripts" / script.name).write_text(STUB)
    (dest / "config").mkdir()
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return dest


# The stages these keys feed (later stages' jobs follow from the same params; stubs cannot fake them).
TARGETS = ("simulate_all", "resimulate_all", "preprocess_all", "train_all")


def _planned(workdir: Path, config: dict, targets: tuple[str, ...] = TARGETS) -> dict[str, int]:
    """{rule: jobs} of a dry run of `targets` under `config`."""
    path = workdir / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = _snakemake(workdir, "-n", *targets, "--configfile", str(path))
    assert proc.returncode == 0, proc.stdout[-3000:]
    if "Nothing to be done" in proc.stdout:
        return {}
    table = proc.stdout.split("Job stats:")[1].split("\n\n")[0]
    rows = [re.match(r"(\w+)\s+(\d+)$", line.strip()) for line in table.splitlines()]
    return {m[1]: int(m[2]) for m in rows if m and m[1] not in ("total", "job") and not m[1].endswith("all")}


def _with(key: str, value: object) -> dict:
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return config


PRE_DOWN = {"preprocess": 1, "preprocess_summary": 1, "preprocess_plot": 1, "train": 2, "train_compare": 1}
SIM_DOWN = {"simulate_plot": 1, **PRE_DOWN}
RESIM_DOWN = {"resimulate_plot": 1, **PRE_DOWN}
CHANGES = [
    ("seed", 8, {"simulate": 2, "resimulate": 2, **SIM_DOWN, "resimulate_plot": 1}),
    ("simulate.pythia_settings", ["PartonLevel:MPI = off"], {"simulate": 2, "resimulate": 2, **SIM_DOWN,
                                                             "resimulate_plot": 1}),
    ("simulate.jets_per_shard", 11, {"simulate": 2, **SIM_DOWN}),
    ("simulate.max_events_per_jet", 30, {"simulate": 2, "resimulate": 2, **SIM_DOWN, "resimulate_plot": 1}),
    ("resimulate.window_margin", 0.3, {"resimulate": 2, **RESIM_DOWN}),
    ("preprocess.max_particles", 64, PRE_DOWN),
    ("preprocess.dask", {"cluster": "none", "workers": 3}, {}),
    ("train.lr", 0.002, {"train": 2, "train_compare": 1}),
    ("train.model_overrides", {"mlp": {"lr": 0.01}}, {"train": 1, "train_compare": 1}),
    ("train.progress", False, {}),
]  # fmt: skip


@pytest.mark.slow
def test_changing_one_key_reruns_exactly_the_jobs_it_affects(tmp_path: Path) -> None:
    """Failure 2: seed, pythia_settings, max_events_per_jet, preprocess, resimulate keys changed nothing."""
    workdir = _copy_workflow(tmp_path, CONFIG)
    proc = _snakemake(workdir, *TARGETS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _planned(workdir, CONFIG) == {}
    wrong = {}
    for key, value, expected in CHANGES:
        got = _planned(workdir, _with(key, value))
        if got != expected:
            wrong[key] = {"expected": expected, "got": got}
    assert not wrong, "; ".join(f"{k}: {v}" for k, v in wrong.items())


# The robustness and images stages on the same stub run: robustness.models defaults to part, pfn, mlp (3 runs,
# part trained for it), mlp has an ensemble of 3 (2 member runs), 2 classes x 1 held-out file.
LATE_TARGETS = ("robustness_all", "images_all")
EVALUATE = {"robustness_evaluate": 3, "robustness_table": 1}
SAMPLE = {"robustness_sample": 2, "robustness_preprocess": 1, **EVALUATE}
LATE_CHANGES = [
    ("robustness.bins", 5, EVALUATE),
    ("robustness.shifts", [{"name": "replica"}], SAMPLE),
    ("robustness.dask_cluster", "local", {}),
    ("images.plot_max_jets", 5, {"images_plot": 1}),
    ("images.transfer.seeds", [1], {"images_transfer": 1}),
    ("train.lr", 0.002, {"train": 3, "robustness_member": 2, **EVALUATE, "images_transfer": 1}),
    ("train.progress", False, {}),
]  # fmt: skip


@pytest.mark.slow
def test_robustness_and_images_rerun_exactly_the_jobs_a_key_affects(tmp_path: Path) -> None:
    """The settings params of the robustness and images rules: one key, the jobs that read it, no others."""
    workdir = _copy_workflow(tmp_path, CONFIG)
    proc = _snakemake(workdir, *LATE_TARGETS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _planned(workdir, CONFIG, LATE_TARGETS) == {}
    wrong = {}
    for key, value, expected in LATE_CHANGES:
        got = _planned(workdir, _with(key, value), LATE_TARGETS)
        if got != expected:
            wrong[key] = {"expected": expected, "got": got}
    assert not wrong, "; ".join(f"{k}: {v}" for k, v in wrong.items())


@pytest.mark.slow
def test_a_new_fraction_or_seed_adds_runs_and_reruns_no_finished_one(tmp_path: Path) -> None:
    """finetune.fractions / seeds / modes say which runs exist: extending them plans only the new runs (and
    the table); a key a run reads (finetune.train) reruns every run."""
    workdir = _copy_workflow(tmp_path, CONFIG)
    targets = ("finetune_all",)
    proc = _snakemake(workdir, *targets)
    assert proc.returncode == 0, proc.stdout[-3000:]
    runs = int(re.search(r"^finetune\s+(\d+)$", proc.stdout, re.M)[1])
    fractions = [0.1, 1.0]  # the schema's default (CONFIG sets none)
    table = {"finetune_efficiency": 1, "pretrain_headline": 1}
    more = _with("finetune.fractions", [*fractions, 0.5])
    assert _planned(workdir, more, targets) == {"finetune": runs // len(fractions), **table}
    longer = _with("finetune.train", {"max_steps": 3})
    assert _planned(workdir, longer, targets) == {"finetune": runs, **table}


def test_invalid_config_gives_a_short_error_naming_key_and_value(tmp_path: Path) -> None:
    """Failure 5: a validation error was followed by a ~960-line dump of the schema and the config."""
    workdir = _copy_workflow(tmp_path, {**CONFIG, "simulate": {"jets_per_shard": -3}})
    proc = _snakemake(workdir, "-n")
    assert proc.returncode != 0
    assert "simulate.jets_per_shard: -3 is less than the minimum of 1" in proc.stdout, proc.stdout[-2000:]
    assert len(proc.stdout.splitlines()) < 15, proc.stdout
