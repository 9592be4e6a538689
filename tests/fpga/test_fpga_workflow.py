"""The FPGA rules in a dry run: fpga_synth asks for the licensed Slurm partition only when vendor synthesis is
enabled (issue 26 item 4), any configured student name is planned (issue 25), and the FPGA rules' paths are
those of jetfm.paths."""

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


def _dry_run(workdir: Path, config: dict) -> str:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(
        os.environ, PYTHONPATH=str(REPO / "src"), JETFM_SLURM_PARTITION_CPU="", JETFM_SLURM_PARTITION_FPGA=""
    )
    command = [SNAKEMAKE, "fpga_all", "-n", "--cores", "1", "--configfile", "config.yaml"]
    run = subprocess.run(command, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    return run.stdout


def _synth_jobs(out: str) -> list[tuple[str, str]]:
    """(output, slurm_partition) of each planned fpga_synth job."""
    jobs = []
    for block in out.split("\nrule ")[1:]:
        if block.startswith("fpga_synth:"):
            output = re.search(r"output: (\S+)", block)
            partition = re.search(r"slurm_partition=(\w+)", block)
            assert output and partition, block
            jobs.append((output[1], partition[1]))
    return jobs


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake is not installed next to this Python")
def test_fpga_synth_partition_follows_vendor_synthesis(tmp_path: Path) -> None:
    for part in ("Snakefile", "workflow", "envs", "scripts"):
        src = REPO / part
        shutil.copytree(src, tmp_path / part) if src.is_dir() else shutil.copy(src, tmp_path / part)
    shutil.copytree(REPO / "config", tmp_path / "config")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    # a student under a name of its own (its kind from fpga.sizes) is planned like the others
    config["fpga"]["students"] = [*config["fpga"]["students"], "mlp_b1"]
    config["fpga"].setdefault("sizes", {})["mlp_b1"] = {"kind": "hgq_mlp", "ebops_beta": 1e-6}
    out = _dry_run(tmp_path, config)
    open_only = _synth_jobs(out)
    expected = sorted(f"{paths.fpga_dir(s)}/synthesis.json" for s in config["fpga"]["students"])
    assert sorted(o for o, _ in open_only) == expected
    assert f"{paths.fpga_dir()}/pareto.csv" in out and f"{paths.fpga_dir()}/pareto.png" in out
    assert {p for _, p in open_only} == {"cpu"}
    config["fpga"]["synthesis"] = {"vendor": True}
    assert {p for _, p in _synth_jobs(_dry_run(tmp_path, config))} == {"fpga"}


def test_synth_partition_reads_the_cluster_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from jetfm.fpga.rules import student_out, synth_partition

    monkeypatch.setenv("JETFM_SLURM_PARTITION_FPGA", "vivado-nodes")
    monkeypatch.setenv("JETFM_SLURM_PARTITION_CPU", "short")
    assert synth_partition({"fpga": {"synthesis": {"vendor": True}}}) == "vivado-nodes"
    assert synth_partition({"fpga": {"synthesis": {"vendor": False}}}) == "short"
    assert student_out("emulation.json") == f"{paths.fpga_dir('{student}')}/emulation.json"
