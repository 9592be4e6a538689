"""Presets stay apart: each config/*.yaml that names a dataset names its own, and its planned jobs read and
write only that dataset's results (issue 26).

A preset is applied on top of config/config.yaml (Snakemake merges `--configfile` into the Snakefile's
configfile), so a path the default config spells out (a dataset name in `robustness.models`, say) leaks into
every preset that does not override it, and two presets of one dataset name overwrite each other's shards
and runs. Overlays without a `dataset:` (robustness-full.yaml) extend the default dataset on purpose.
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

from jetfm import paths

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
PRESETS = sorted(p.name for p in (REPO / "config").glob("*.yaml"))


def _dataset(preset: str) -> str:
    """The dataset a preset runs on: its own `dataset:` or, for an overlay, the default config's."""
    own = yaml.safe_load((REPO / "config" / preset).read_text()) or {}
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return own.get("dataset", default["dataset"])


def _roots(dataset: str) -> tuple[str, ...]:
    """Every results/ location that belongs to one dataset (jetfm.paths), as path prefixes."""
    return (
        paths.sim_dir(dataset) + "/",
        paths.h5_dir(dataset) + "/",
        paths.robustness_h5_dir(dataset) + "/",
        paths.model_dir(dataset, ""),  # results/models/<dataset>_<run>, also the comparison table
        paths.pretrain_dir(dataset, ""),
        paths.finetune_dir(dataset) + "/",
        paths.robustness_dir(dataset) + "/",
        paths.images_dir(dataset) + "/",
        paths.plots_dir(dataset) + "/",
    )


# what a preset writes under its dataset's results (simulation, shards, supervised models) comes from these
WRITERS = ("seed", "classes", "simulate", "resimulate", "preprocess", "train")


def test_presets_that_share_a_dataset_name_agree_on_what_writes_under_it() -> None:
    """Two presets may name one dataset only to reuse its outputs (fpga-demo reuses pretrain-demo's jets and
    teacher): then every section that writes under the dataset must be the same in both, or one would
    silently overwrite or rerun the other's files."""
    named: dict[str, list[str]] = {}
    own = {p: yaml.safe_load((REPO / "config" / p).read_text()) or {} for p in PRESETS}
    for preset, cfg in own.items():
        if "dataset" in cfg:
            named.setdefault(cfg["dataset"], []).append(preset)
    for name, files in named.items():
        first, *others = files
        for other in others:
            differ = [k for k in WRITERS if own[first].get(k) != own[other].get(k)]
            assert not differ, f"{first} and {other} share dataset {name!r} but differ in {differ}"


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the workflow without results, so the dry runs plan every job and write nothing here."""
    dest = tmp_path_factory.mktemp("presets")
    for part in ("Snakefile", "workflow", "profiles", "envs", "scripts", "config"):
        src = REPO / part
        (shutil.copytree(src, dest / part, symlinks=True) if src.is_dir() else shutil.copy(src, dest / part))
    # config/jetclass-public.yaml reads $JETCLASS_DIR/{train_100M,val_5M,test_20M}/*.root; planning only
    # expands the patterns, so one (empty) file per split stands in for the public release here
    for split, name in (("train_100M", "HToBB_000"), ("val_5M", "HToBB_120"), ("test_20M", "HToBB_100")):
        (dest / "JetClass" / split).mkdir(parents=True)
        (dest / "JetClass" / split / f"{name}.root").touch()
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_a_presets_jobs_touch_no_other_datasets_results(workflow: Path, preset: str) -> None:
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "1", "all", "images_transfer_all", "--configfile", f"config/{preset}"],
        cwd=workflow, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src"), JETCLASS_DIR=str(workflow / "JetClass")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    planned = set(re.findall(r"results/[^\s,;]+", proc.stdout))
    own = _dataset(preset)
    assert any(p.startswith(_roots(own)) for p in planned), f"no job of dataset {own} planned"
    others = {_dataset(p) for p in PRESETS} - {own}
    leaks = sorted(p for p in planned for other in others if p.startswith(_roots(other)))
    assert leaks == [], f"{preset} ({own}) plans {len(leaks)} paths of other datasets, e.g. {leaks[:5]}"


def _dry_run(workflow: Path, *args: str) -> list[dict[str, str]]:
    """`snakemake -n` in the copied workflow: one {field: text} per planned job (rule, output, log, ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETFM_")}  # the profile's default names
    proc = subprocess.run(
        [SNAKEMAKE, "-n", *args], cwd=workflow, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**env, "PYTHONPATH": str(REPO / "src")}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    jobs: list[dict[str, str]] = []
    for line in proc.stdout.splitlines():
        if re.match(r"(local)?rule \w+:$", line):
            jobs.append({"rule": line.split()[-1].rstrip(":")})
        elif jobs and line.startswith("    ") and ": " in line:
            key, _, value = line.strip().partition(": ")
            jobs[-1].setdefault(key, value)
    return jobs


@pytest.mark.slow
def test_jetclass_scale_under_the_slurm_profile_plans_no_runtime_above_the_cap(workflow: Path) -> None:
    """Issue 26 item 4: `slurm.max_runtime_minutes` (config/config.yaml) bounds every job's request."""
    from jetfm import walltime
    from jetfm.config import validate_config

    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    preset = yaml.safe_load((REPO / "config/jetclass-scale.yaml").read_text())
    config = validate_config({**default, **preset})
    jobs = _dry_run(workflow, "--profile", "profiles/slurm", "--configfile", "config/jetclass-scale.yaml")
    requested = [
        dict(kv.split("=", 1) for kv in j["resources"].split(", ")) for j in jobs if "resources" in j
    ]
    assert len(requested) > 10_000 and all("runtime" in r for r in requested)
    caps = {p: walltime.max_runtime(config, p) or float("inf") for p in walltime.PARTITIONS}
    over = [r for r in requested if int(r["runtime"]) > caps[r["slurm_partition"]]]
    assert over == [], f"{len(over)} jobs ask for more than their partition's cap, e.g. {over[:2]}"


@pytest.mark.slow
def test_results_dir_and_logs_dir_root_every_planned_path(workflow: Path, tmp_path: Path) -> None:
    """Issue 26 item 5: `results_dir` / `logs_dir` put every output and log on scratch, none in the clone."""
    results, logs = tmp_path / "scratch" / "results", tmp_path / "scratch" / "logs"
    roots = f"set=[results_dir={results}, logs_dir={logs}]"
    jobs = _dry_run(workflow, "--cores", "1", "all", "--config", roots)
    assert len(jobs) > 50
    for job in jobs:
        for field, root in (("output", results), ("log", logs)):
            stray = [p for p in job.get(field, "").split(", ") if p and not p.startswith(f"{root}/")]
            assert stray == [], f"rule {job['rule']}: {field} {stray} not under {root}"
