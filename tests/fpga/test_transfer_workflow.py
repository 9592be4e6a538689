"""`fpga.transfer` in a dry run: fpga_train takes the training shards holding the views as its transfer input,
and asking for views without `resimulate.enabled` stops the planning with one line naming the key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _dry_run(workdir: Path, config: dict) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(
        os.environ, PYTHONPATH=str(REPO / "src"), JETFM_SLURM_PARTITION_CPU="", JETFM_SLURM_PARTITION_FPGA=""
    )
    command = [SNAKEMAKE, "fpga_all", "-n", "--cores", "1", "--configfile", "config.yaml"]
    return subprocess.run(command, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)  # fmt: skip


def _train_inputs(out: str) -> list[list[str]]:
    """The input files of each planned fpga_train job."""
    blocks = [b for b in out.split("\nrule ")[1:] if b.startswith("fpga_train:")]
    return [next(line for line in b.splitlines() if "input:" in line).split("input:")[1].split(", ")
            for b in blocks]  # fmt: skip


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake is not installed next to this Python")
def test_fpga_train_takes_the_view_shards_and_refuses_views_without_resimulation(tmp_path: Path) -> None:
    for part in ("Snakefile", "workflow", "envs", "scripts", "config"):
        src = REPO / part
        shutil.copytree(src, tmp_path / part) if src.is_dir() else shutil.copy(src, tmp_path / part)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["resimulate"]["enabled"]  # the tiny default config simulates views
    config["fpga"]["students"] = ["deepsets"]
    plain = _dry_run(tmp_path, config)
    assert plain.returncode == 0, plain.stdout[-2000:]
    (inputs,) = _train_inputs(plain.stdout)
    train = [f.strip() for f in inputs if "/train/" in f]
    config["fpga"]["transfer"] = {"views": True}
    views = _dry_run(tmp_path, config)
    assert views.returncode == 0, views.stdout[-2000:]
    (with_views,) = _train_inputs(views.stdout)
    assert sorted(f.strip() for f in with_views if "/train/" in f) == sorted(train * 2)  # train + transfer
    config["resimulate"]["enabled"] = False
    refused = _dry_run(tmp_path, config)
    assert refused.returncode != 0
    assert "fpga.transfer.views is true but resimulate.enabled is false" in refused.stdout
