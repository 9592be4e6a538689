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


def test_presets_that_name_a_dataset_name_different_ones() -> None:
    named = {}
    for preset in PRESETS:
        own = yaml.safe_load((REPO / "config" / preset).read_text()) or {}
        if "dataset" in own:
            named.setdefault(own["dataset"], []).append(preset)
    shared = {name: files for name, files in named.items() if len(files) > 1}
    assert shared == {}, f"presets sharing a dataset name: {shared}"


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
