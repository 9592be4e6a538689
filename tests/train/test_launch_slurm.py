"""A training rule with 2 ranks through `snakemake --profile profiles/slurm` on the real single-node Slurm of
tests/slurm_harness: the job asks for 2 tasks, the rule's launcher starts them with srun inside it (a step of
2 tasks in sacct), the log and metrics.json say world size 2, and the metrics equal one local process at the
same global batch. The FPGA students' rule, whose ranks come from fpga.train, does the same on CPU ranks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fixtures.train import make_dataset
from slurm_harness.cluster import SlurmCluster

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
B = 16  # per-rank batch = HDF5 chunk = read block (see tests/train/test_train_ddp.py)


def _workflow(dest: Path, gpus: int) -> Path:
    """The workflow with a tiny config and ready HDF5 shards (no simulation: only `train` runs)."""
    dest.mkdir(parents=True)
    for part in ("Snakefile", "workflow", "config", "profiles", "scripts", "envs"):
        src = REPO / part
        copy = shutil.copytree if src.is_dir() else shutil.copy
        copy(src, dest / part)
    make_dataset(dest / "results/h5/st", n_train=256, n_val=64, n_test=64, chunk=B)
    train = {"models": ["part"], "gpus": gpus, "device": "cpu", "max_steps": 12, "batch_size": 2 * B,
             "warmup_steps": 2, "eval_every": 6, "checkpoint_every": 12, "log_every": 1, "shuffle_buffer": 0,
             "block_size": B, "eval_batches": 0, "threads": 1,
             "sizes": {"part": {"preset": "tiny", "dropout": 0.0}}}  # fmt: skip
    config = {"dataset": "st", "seed": 7, "resimulate": {"enabled": False}, "train": train}
    (dest / "config/config.yaml").write_text(yaml.safe_dump(config))
    return dest


@pytest.mark.slurm
@pytest.mark.slow
def test_train_rule_runs_two_ranks_as_one_slurm_step(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    target = "results/models/st_part/metrics.json"
    two = _workflow(tmp_path / "two", gpus=2)
    proc = subprocess.run(
        [SNAKEMAKE, "--profile", "profiles/slurm", "--retries", "0",
         "--slurm-init-seconds-before-status-checks", "2", target],
        cwd=two, env=slurm_cluster.env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    log = (two / "logs/train/st_part.log").read_text() if (two / "logs/train/st_part.log").exists() else ""
    job_logs = "".join(p.read_text()[-3000:] for p in sorted((two / "logs/slurm").rglob("*.log")))
    assert proc.returncode == 0, proc.stderr[-2000:] + job_logs + log
    assert log.startswith("training: device cpu, dtype fp32, world size 2 on 1 node(s)"), log[:500]
    jobs = [r for r in slurm_cluster.sacct(allocations=False) if r["WorkDir"] == str(two)]
    job = next(r["JobID"] for r in jobs if "." not in r["JobID"])
    steps = {r["JobID"]: r for r in slurm_cluster.sacct([job], allocations=False)}
    ranks = [r for r in steps.values() if r["JobID"].startswith(f"{job}.") and r["NTasks"] == "2"]
    assert ranks and ranks[0]["State"] == "COMPLETED", steps
    metrics = json.loads((two / target).read_text())
    assert (metrics["world_size"], metrics["per_rank_batch"], metrics["global_batch"]) == (2, B, 2 * B)

    one = _workflow(tmp_path / "one", gpus=1)
    local = subprocess.run([SNAKEMAKE, "--profile", "profiles/default", target], cwd=one, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    single = json.loads((one / target).read_text())
    assert single["world_size"] == 1
    for key in ("accuracy", "macro_auc", "ece", "jets_seen"):
        assert metrics[key] == pytest.approx(single[key], rel=1e-4, abs=1e-5), key


@pytest.mark.slurm
@pytest.mark.slow
def test_fpga_train_rule_runs_two_cpu_ranks_as_one_slurm_step(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """fpga_train with fpga.train.gpus 2 (jetfm.train.stage_layout): a job of 2 tasks without a GPU request,
    both phases in one step of 2 tasks, metrics.json of each phase says world size 2."""
    from jetfm.config import load_config
    from jetfm.train.run import run_training

    dest = _workflow(tmp_path / "fpga", gpus=1)
    config = yaml.safe_load((dest / "config/config.yaml").read_text())
    teacher = tmp_path / "teacher"
    files = {s: [str(dest / f"results/h5/st/{s}/0000.h5")] for s in ("train", "val", "test")}
    run_training(load_config(dest / "config/config.yaml"), "part", files, teacher)
    phase = {"max_steps": 6, "eval_every": 6, "checkpoint_every": 6, "warmup_steps": 2, "log_every": 1}
    config["train"].pop("device")  # auto: the layout of a student asks for no GPU all the same
    config["fpga"] = {"students": ["jet_mlp"], "teacher": str(teacher / "checkpoint.pt"), "qat": phase,
                      "sizes": {"jet_mlp": {"dims": [8]}}, "train": {**phase, "gpus": 2}}  # fmt: skip
    (dest / "config/config.yaml").write_text(yaml.safe_dump(config))
    target = "results/fpga/jet_mlp/qat/metrics.json"
    proc = subprocess.run(
        [SNAKEMAKE, "--profile", "profiles/slurm", "--retries", "0",
         "--slurm-init-seconds-before-status-checks", "2", target],
        cwd=dest, env=slurm_cluster.env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    job_logs = "".join(p.read_text()[-3000:] for p in sorted((dest / "logs/slurm").rglob("*.log")))
    assert proc.returncode == 0, proc.stderr[-2000:] + job_logs
    jobs = [r for r in slurm_cluster.sacct(allocations=False) if r["WorkDir"] == str(dest)]
    job = next(r for r in jobs if "." not in r["JobID"])
    assert "gres/gpu" not in job["AllocTRES"], job  # no GPU asked for the students
    steps = slurm_cluster.sacct([job["JobID"]], allocations=False)
    ranks = [r for r in steps if r["JobID"].startswith(f"{job['JobID']}.") and r["NTasks"] == "2"]
    assert ranks and ranks[0]["State"] == "COMPLETED", steps
    for run in ("float", "qat"):
        metrics = json.loads((dest / f"results/fpga/jet_mlp/{run}/metrics.json").read_text())
        assert (metrics["world_size"], metrics["per_rank_batch"]) == (2, B), run
